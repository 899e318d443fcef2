"""The AWS side as infrastructure: one CloudFormation template rendered from the definitions
the local stack runs on (settings, the job registry, the state machine's template, the
rule, the RunFailed queue), a linter gate (cfn-lint), and the plan of `deploy aws`.

`render(settings)` builds the template as a dict; `to_yaml` prints it. Nothing here talks to
AWS: `deploy aws --dry-run` prints what a deploy would do.
"""

from pipeline.deploy.template import render, to_yaml

__all__ = ["render", "to_yaml"]
