"""What every console script shares: the argument parser's shape, ``--version`` and logging set-up.

Only the ``reid_sdk`` logger gets a handler: the root logger is left alone, so a library that logs at INFO
(the ONNX exporter, say) stays quiet unless the user configures logging themselves.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys

from reid_sdk import __version__

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # the shell's code for a process stopped by SIGINT (Ctrl-C)


_RST_LITERAL = re.compile(r"(?::[a-z]+:)?`{1,2}([^`]+)`{1,2}")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's line breaks, and shows an option's default where it has a meaningful one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        takes_default = action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE)
        if takes_default and _meaningful_default(action) and "%(default)" not in help_text:
            return f"{help_text} (default: %(default)s)"
        return help_text


def _meaningful_default(action: argparse.Action) -> bool:
    """False for flags (store_true and kin: their default is their absence), None (the help text says what
    happens then), argparse's SUPPRESS and empty lists (of an ``append`` option)."""
    default = action.default
    return not (action.nargs == 0 or default is None or default is argparse.SUPPRESS
                or (isinstance(default, (list, tuple)) and not default))


def plain_text(text: str | None) -> str | None:
    """``text`` (a module docstring) with its RST literals and roles, such as ``:mod:`x```, as plain text."""
    return None if text is None else _RST_LITERAL.sub(r"\1", text)


def make_parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    """An argument parser with ``--version`` whose ``--help`` shows ``description`` as plain text and the
    defaults that mean something."""
    parser = argparse.ArgumentParser(prog=prog, description=plain_text(description), formatter_class=_HelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s (reid-sdk) {__version__}")
    return parser


def add_subparser(commands: argparse._SubParsersAction, name: str, help_text: str) -> argparse.ArgumentParser:
    """A sub-command parser with the same help formatting as :func:`make_parser`."""
    return commands.add_parser(name, help=help_text, description=plain_text(help_text),
                               formatter_class=_HelpFormatter)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record (it may be replaced after set-up)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def configure_logging(level: int = logging.INFO, timestamps: bool = False) -> None:
    """Send the ``reid_sdk`` logger's records at ``level`` and above to stderr; one handler per process."""
    logger = logging.getLogger("reid_sdk")
    logger.setLevel(level)
    handler = next((h for h in logger.handlers if isinstance(h, _StderrHandler)), None)
    if handler is None:
        handler = _StderrHandler(sys.stderr)
        logger.addHandler(handler)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s" if timestamps else "%(message)s",
                                           datefmt="%H:%M:%S"))


def fail(prog: str, error: BaseException | str, code: int = EXIT_BAD_INPUT) -> int:
    """Print ``prog: error: ...`` to stderr and return ``code`` (the bad-input code unless told otherwise)."""
    print(f"{prog}: error: {error}", file=sys.stderr)
    return code


def add_camera_standardise_option(parser: argparse.ArgumentParser) -> None:
    """``--camera-standardise`` / ``--no-camera-standardise``: one grammar for every command that searches a gallery."""
    parser.add_argument("--camera-standardise", action=argparse.BooleanOptionalAction, default=None,
                        help="compare features with their camera's mean removed (default: on when the gallery's "
                             "entries have cameras)")
