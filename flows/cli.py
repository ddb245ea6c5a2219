"""`progvc`: one command line for the codec, the evaluation and the archive pipeline.

Each area registers its own sub-commands (see docs/CONTRACTS.md); heavy imports happen inside the
command functions so `progvc --help` and the codec commands start fast and never import Ray/Prefect.

Errors (issue 16.5): a bad argument is one line on stderr and exit code 2, found before Ray or Prefect start
(argparse types and `UsageError`); any other failure is one line and exit code 1; `--verbose` (anywhere on
the command line) prints the full traceback as well and turns Prefect's logging up to INFO.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import sys
import traceback

from pipeline.errors import ProGVCError

COMMAND_MODULES = ("pipeline.codec.cli", "pipeline.evaluate.cli", "flows.commands")
VERBOSE_FLAG = "--verbose"
_verbose = False  # set by `main` for the command it runs


def verbose() -> bool:
    """Whether the running command was given `--verbose`."""
    return _verbose


class _NoTraceback(logging.Formatter):
    """Wraps a console handler's formatter: the log line without the exception's traceback, unless
    `--verbose`. The record itself is left as it was (other handlers, e.g. Prefect's API log, keep it)."""

    def __init__(self, inner: logging.Formatter | None):
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        if _verbose or not (record.exc_info or record.exc_text or record.stack_info):
            return self.inner.format(record)
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def quiet_console_tracebacks() -> None:
    """Console log handlers configured so far (Prefect's, once `prefect` is imported) print no tracebacks
    unless `--verbose`: the command's own one-line error says what failed."""
    loggers = [logging.getLogger(), *(lg for lg in logging.Logger.manager.loggerDict.values()
                                      if isinstance(lg, logging.Logger))]
    for lg in loggers:
        for h in lg.handlers:
            if (isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
                    and getattr(h, "stream", None) in (sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__)
                    and not isinstance(h.formatter, _NoTraceback)):
                h.setFormatter(_NoTraceback(h.formatter))


class UsageError(ProGVCError):
    """A bad command-line argument or setting, found before any work starts: one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `progvc compress: error: argument --gop: ...` (no usage block)."""

    def error(self, message: str):  # noqa: D102 - argparse's hook
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def version() -> str:
    """The installed package's version (`progvc-archive`), else the one in pyproject.toml."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("progvc-archive")
    except PackageNotFoundError:
        import re
        from pathlib import Path

        text = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
        found = re.search(r'^version\s*=\s*"([^"]+)"', text, re.M)
        return found.group(1) if found else "unknown"


def one_line(message: str) -> str:
    """An error message on one line: a message that carries a remote traceback (a Ray actor's) becomes its
    first line's lead and the traceback's last line (the root cause), without the exception's class path."""
    lines = [ln.strip() for ln in str(message).strip().splitlines() if ln.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else ""
    cause = re.sub(r"^[\w.]+(Error|Exception|Exit)\b:\s*", "", lines[-1])
    lead = lines[0].split(": ", 1)[0]
    return f"{lead}: {cause}"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="progvc", description="ProGVC archive: progressive generative neural video codec and pipeline"
    )
    parser.add_argument("--version", action="version", version=f"progvc {version()}")
    parser.add_argument(VERBOSE_FLAG, action="store_true",
                        help="full tracebacks and Prefect's INFO logs on errors (accepted anywhere on the line)")
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
    global _verbose
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = _verbose = VERBOSE_FLAG in argv
    if verbose:  # a flag of every sub-command too: taken out before the sub-parser sees it
        argv = [a for a in argv if a != VERBOSE_FLAG]
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    name = f"progvc {args.command}"
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 2
    except ProGVCError as exc:
        if verbose:
            traceback.print_exc()
            print(f"{name}: error: {exc}", file=sys.stderr)
        else:
            msg = one_line(str(exc))
            hint = f" (run with {VERBOSE_FLAG} for the full trace)" if msg != str(exc).strip() else ""
            print(f"{name}: error: {msg}{hint}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("progvc: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one line unless --verbose
        if verbose:
            traceback.print_exc()
        hint = "" if verbose else f" (run with {VERBOSE_FLAG} for the full trace)"
        print(f"{name}: error: {type(exc).__name__}: {one_line(str(exc))}{hint}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
