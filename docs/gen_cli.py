"""Write docs/reference/cli.md, the command-line reference, from brainmri's own argparse parser.

Usage: .venv/bin/python docs/gen_cli.py [--check]

Every command's ``--help`` text, as ``brainmri COMMAND --help`` prints it (at a fixed width of 100 columns, so the
page does not depend on the terminal). ``--check`` writes nothing and exits 1 when the page differs from what the
parser gives (tests/test_docs.py runs it: a new option without a new page fails the tests).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

PAGE = Path(__file__).resolve().parent / "reference" / "cli.md"


def render() -> str:
    os.environ["COLUMNS"] = "100"  # argparse wraps at the terminal's width
    from brainmri.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
    parts = [
        "# Command-line reference\n",
        "Generated from brainmri's argparse parser by `docs/gen_cli.py`; the tests fail when it is stale.\n",
        f"```\n{parser.format_help().rstrip()}\n```\n",
    ]
    for name, sub in commands.choices.items():
        parts.append(f"## brainmri {name}\n\n```\n{sub.format_help().rstrip()}\n```\n")
    return "\n".join(parts)


def main() -> int:
    text = render()
    if "--check" in sys.argv[1:]:
        if not PAGE.exists() or PAGE.read_text(encoding="utf-8") != text:
            print(f"{PAGE} is stale: run .venv/bin/python docs/gen_cli.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text, encoding="utf-8")
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
