"""What every console script shares: the argument parser's shape, ``--version`` and logging set-up.

Only the ``reid_sdk`` logger gets a handler: the root logger is left alone, so a library that logs at INFO
(the ONNX exporter, say) stays quiet unless the user configures logging themselves.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path

from reid_sdk import __version__
from reid_sdk._utils.progress import PROGRESS_MODES

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # the shell's code for a process stopped by SIGINT (Ctrl-C)

# Old option spellings still parse, with a deprecation line, until this version removes them.
ALIASES_REMOVED_IN = "0.2.0"
LOG_LEVELS = ("debug", "info", "warning", "error")


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
    """An argument parser with ``--version`` and ``--log-level`` whose ``--help`` shows ``description`` as plain
    text and the defaults that mean something."""
    parser = argparse.ArgumentParser(prog=prog, description=plain_text(description), formatter_class=_HelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s (reid-sdk) {__version__}")
    _add_log_level_option(parser, default="info")
    return parser


def add_subparser(commands: argparse._SubParsersAction, name: str, help_text: str) -> argparse.ArgumentParser:
    """A sub-command parser with the same help formatting as :func:`make_parser`; ``--log-level`` is accepted
    before or after the sub-command."""
    sub = commands.add_parser(name, help=help_text, description=plain_text(help_text), formatter_class=_HelpFormatter)
    _add_log_level_option(sub, default=argparse.SUPPRESS)  # SUPPRESS: an absent option keeps the parent's value
    return sub


def _add_log_level_option(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--log-level", choices=LOG_LEVELS, default=default,
                        help="least severe messages printed to stderr")


class _DeprecatedSpelling(argparse.Action):
    """An old spelling of an option, hidden from ``--help``: it stores what the new spelling stores and prints one
    deprecation line on stderr."""

    def __init__(self, option_strings, dest, new_spelling: str, value=None, nargs=None, **kwargs):
        self.new_spelling, self.value = new_spelling, value
        super().__init__(option_strings, dest, nargs=0 if value is not None else nargs, help=argparse.SUPPRESS,
                         **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{parser.prog}: warning: {option_string} is deprecated and goes in reid-sdk {ALIASES_REMOVED_IN}: "
              f"use {self.new_spelling}", file=sys.stderr)
        setattr(namespace, self.dest, self.value if self.value is not None else values)


def add_deprecated_spelling(parser: argparse.ArgumentParser, old: str, dest: str, new_spelling: str,
                            value: object = None, type=None) -> None:
    """Keep ``old`` working for one minor version as another way to write ``new_spelling`` (into ``dest``);
    ``value``: what a flag without argument stores (``--no-progress`` stores ``"none"``)."""
    parser.add_argument(old, dest=dest, action=_DeprecatedSpelling, new_spelling=new_spelling, value=value, type=type)


def add_model_option(parser: argparse.ArgumentParser, help_text: str, required: bool = True,
                     old_spelling: str | None = None) -> None:
    """``--model``: the one spelling of the model a command runs (a checkpoint, ONNX, OpenVINO or TensorRT file)."""
    parser.add_argument("--model", required=required and old_spelling is None, type=Path, help=help_text)
    if old_spelling is not None:
        add_deprecated_spelling(parser, old_spelling, "model", "--model", type=Path)


def require_model(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit 2 with argparse's usage line when ``--model`` (or its old spelling) is missing."""
    if args.model is None:
        parser.error("the following arguments are required: --model")


def add_top_k_option(parser: argparse.ArgumentParser, default: int, help_text: str) -> None:
    """``-k/--top-k``: how many matches a command returns (per query or per track)."""
    parser.add_argument("-k", "--top-k", dest="top_k", type=int, default=default, help=help_text)


def add_device_option(parser: argparse.ArgumentParser, default: str | None = "auto") -> None:
    """``--device``: auto, cpu, cuda or cuda:N, checked when the command starts."""
    parser.add_argument("--device", default=default, help="auto, cpu, cuda, cuda:1, ...")


def add_progress_option(parser: argparse.ArgumentParser, old_no_progress: bool = False) -> None:
    """``--progress {auto,bar,log,none}``: a bar on a terminal, log lines elsewhere, or nothing."""
    parser.add_argument("--progress", choices=PROGRESS_MODES, default="auto",
                        help="auto: a bar on a terminal, log lines elsewhere")
    if old_no_progress:
        add_deprecated_spelling(parser, "--no-progress", "progress", "--progress none", value="none")


def add_json_option(parser: argparse.ArgumentParser) -> None:
    """``--json``: print the command's results as one JSON document on stdout instead of text."""
    parser.add_argument("--json", action="store_true", help="print the results as JSON on stdout instead of text")


def print_json(document: object) -> None:
    """Print ``document`` as indented JSON (paths and numpy scalars as their text)."""
    print(json.dumps(document, indent=2, default=str))


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record (it may be replaced after set-up)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def configure_logging(level: int | str = logging.INFO, timestamps: bool = False) -> None:
    """Send the ``reid_sdk`` logger's records at ``level`` (a number or one of :data:`LOG_LEVELS`) and above to
    stderr; one handler per process."""
    logger = logging.getLogger("reid_sdk")
    logger.setLevel(level.upper() if isinstance(level, str) else level)
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
