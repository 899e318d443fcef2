"""The `shoplake` command line: thin commands grouped by noun (stack, config, provision).

`main` is the console script's entry point. It imports the commands (and with them click,
rich, boto3...) itself, so a Ctrl-C during those imports ends quietly with 130 instead of
a traceback.
"""

from __future__ import annotations

import sys


def main() -> int:
    try:
        from pipeline.cli.main import main as run
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return run()
