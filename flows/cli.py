"""`progvc`: one command line for the codec, the evaluation and the archive pipeline.

Each area registers its own sub-commands (see docs/CONTRACTS.md); heavy imports happen inside the
command functions so `progvc --help` and the codec commands start fast and never import Ray/Prefect.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from pipeline.errors import ProGVCError

COMMAND_MODULES = ("pipeline.codec.cli", "pipeline.evaluate.cli", "flows.commands")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="progvc", description="ProGVC archive: progressive generative neural video codec and pipeline"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real import error inside the module: show it
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ProGVCError as exc:
        print(f"progvc {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("progvc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
