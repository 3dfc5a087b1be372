"""What every console script shares: the argument parser's shape, ``--version`` and logging set-up.

Only the ``reid_sdk`` logger gets a handler: the root logger is left alone, so a library that logs at INFO
(the ONNX exporter, say) stays quiet unless the user configures logging themselves.
"""

from __future__ import annotations

import argparse
import logging
import sys

from reid_sdk import __version__

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults in ``--help`` and keeps the description's line breaks."""


def make_parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    """An argument parser with ``--version`` whose ``--help`` shows every default."""
    parser = argparse.ArgumentParser(prog=prog, description=description, formatter_class=_HelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s (reid-sdk) {__version__}")
    return parser


def add_subparser(commands: argparse._SubParsersAction, name: str, help_text: str) -> argparse.ArgumentParser:
    """A sub-command parser with the same help formatting as :func:`make_parser`."""
    return commands.add_parser(name, help=help_text, description=help_text, formatter_class=_HelpFormatter)


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
