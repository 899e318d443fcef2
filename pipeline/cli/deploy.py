"""`shoplake deploy render|lint|aws`: the AWS side as one CloudFormation template."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click
from rich.markup import escape

from pipeline.cli.common import OUT, CliContext, pass_cli
from pipeline.errors import TerminalError


@click.group("deploy")
def deploy_group() -> None:
    """The AWS deployment, rendered from the definitions the local stack runs on."""


def _rendered(ctx: CliContext) -> tuple[dict, str]:
    from pipeline.deploy import render, to_yaml
    from pipeline.deploy.lint import check_substitutions

    template = render(ctx.settings)
    problems = check_substitutions(template)
    if problems:
        raise TerminalError(f"the rendered template is broken: {'; '.join(problems)}",
                            hint="fix pipeline/deploy/template.py or the state machine "
                                 "template (pipeline/orchestration/asl.py)")
    return template, to_yaml(template)


@deploy_group.command("render")
@click.option("-o", "--out", "out", type=click.Path(dir_okay=False), default=None,
              help="Write the template to this file instead of standard output.")
@pass_cli
def render_cmd(ctx: CliContext, out: str | None) -> int:
    """Print the CloudFormation template (YAML) of the AWS deployment."""
    template, text = _rendered(ctx)
    if out:
        Path(out).write_text(text, encoding="utf-8")
        OUT.print(f"wrote {escape(out)} ({len(template['Resources'])} resources)")
    else:
        click.echo(text, nl=False)
    return 0


@deploy_group.command("lint")
@click.argument("path", type=click.Path(exists=True, dir_okay=False), required=False)
@pass_cli
def lint_cmd(ctx: CliContext, path: str | None) -> int:
    """cfn-lint the template at PATH (default: the one `deploy render` prints)."""
    from pipeline.deploy.lint import TemplateLintError, lint

    with tempfile.TemporaryDirectory() as tmp:
        if path is None:
            _, text = _rendered(ctx)
            target = Path(tmp) / "shoplake.yaml"
            target.write_text(text, encoding="utf-8")
        else:
            target = Path(path)
        result = lint(target)
    if result.output:
        click.echo(result.output, err=not result.ok)
    if not result.ok:
        raise TemplateLintError(result)
    OUT.print(f"[green]cfn-lint passed[/green] on {escape(str(path or 'the rendered template'))}")
    return 0


@deploy_group.command("aws")
@click.option("--dry-run", is_flag=True, help="Print the plan; touch nothing.")
@pass_cli
def aws_cmd(ctx: CliContext, dry_run: bool) -> int:
    """Deploy to the AWS account of the default credentials: scripts, stack, warehouse."""
    from pipeline.deploy.plan import deploy, plan

    if dry_run:
        for i, step in enumerate(plan(ctx.settings), start=1):
            OUT.print(f"{i}. {escape(step.what)}")
            for line in step.detail:
                OUT.print(f"     {escape(line)}")
        OUT.print("dry run: nothing was changed")
        return 0
    for line in deploy(ctx.settings):
        OUT.print(escape(line))
    return 0
