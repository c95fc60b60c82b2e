"""``vramplan`` entry point: builds the argparse tree from ``commands/*`` and maps errors to exit code 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import __version__
from ..core.errors import VramplanError
from .commands import COMMANDS


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line (exit 2) like every other input error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"vramplan: error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    """The full parser with every subcommand registered."""
    parser = _Parser(
        prog="vramplan",
        description="Will this fine-tuning run fit in GPU memory, why not, and what to change.",
    )
    parser.add_argument("--version", action="version", version=f"vramplan {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 the run does not fit where a command says so, 2 bad input)."""
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    try:
        return int(args.run(args) or 0)
    except VramplanError as exc:
        sys.stderr.write(f"vramplan: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("vramplan: interrupted\n")
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
