"""`python -m pipeline.stack.probe URL`: exit 0 when URL answers 200 within 4 s, else 1.

A container healthcheck. Compose files call it with no spaces inside an argument, as some
engines (podman 4's Docker API) split a healthcheck's arguments on spaces.
"""

from __future__ import annotations

import sys
import urllib.request


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m pipeline.stack.probe URL", file=sys.stderr)
        return 2
    try:
        with urllib.request.urlopen(argv[0], timeout=4) as resp:
            return 0 if resp.status == 200 else 1
    except OSError as exc:
        print(f"{argv[0]}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
