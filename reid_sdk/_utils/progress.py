"""Progress that reaches the user wherever the output goes: a tqdm bar on a terminal, log lines elsewhere.

Under nohup, ``docker logs`` or Slurm, stderr is no terminal and a bar would be one unreadable line (or
nothing); there a line is logged at the first update, then at most every ``interval`` seconds, and at the end.
One idiom for both shapes of work: wrap an iterable, or count with ``update(n)`` and ``close()`` (or ``with``).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from tqdm import tqdm

logger = logging.getLogger(__name__)

T = TypeVar("T")
LOG_INTERVAL_S = 30.0
#: auto: a bar on a terminal, log lines elsewhere, nothing where reid_sdk's INFO messages are off.
PROGRESS_MODES = ("auto", "bar", "log", "none")
_default_mode = "auto"


def set_default_progress(mode: str) -> None:
    """The mode of progress shown where a caller names none (a command's ``--progress``: training and
    adaptation pass no mode down their many steps)."""
    global _default_mode
    _check_mode(mode)
    _default_mode = mode


def _check_mode(mode: str) -> None:
    if mode not in PROGRESS_MODES:
        raise ValueError(f"progress must be one of {', '.join(PROGRESS_MODES)}, got {mode!r}")


class LoggedProgress(Iterable[T]):
    """Counts items and logs ``desc: done/total unit (rate/s) postfix`` now and then (see module doc); the same
    calls as tqdm: iterate over ``iterable``, or ``update(n)`` and ``close()``."""

    def __init__(self, iterable: Iterable[T] | None = None, desc: str = "", total: int | None = None,
                 unit: str = "it", interval: float = LOG_INTERVAL_S) -> None:
        self.iterable = iterable
        self.desc = desc
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.unit = unit
        self.interval = interval
        self.postfix: dict[str, Any] = {}
        self.done = 0
        self.started = time.perf_counter()
        self.last_logged: float | None = None
        self.closed = False

    def set_postfix(self, **values: Any) -> None:
        """Values shown at the end of the next line (the same call as tqdm's)."""
        self.postfix = values

    def update(self, count: int = 1) -> None:
        """Count ``count`` more items; log at the first update and when ``interval`` seconds have passed."""
        self.done += count
        now = time.perf_counter()
        if self.last_logged is None or now - self.last_logged >= self.interval:
            self._log(now)

    def close(self) -> None:
        """Log the final line (once)."""
        if not self.closed:
            self.closed = True
            self._log(time.perf_counter())

    def _log(self, now: float) -> None:
        self.last_logged = now
        rate = self.done / max(now - self.started, 1e-9)
        total = f"/{self.total}" if self.total is not None else ""
        extra = "".join(f" {key}={value}" for key, value in self.postfix.items())
        if self.total is not None and 1 < self.done < self.total:  # as a bar shows it: the time left at this rate
            extra += f", about {format_duration((self.total - self.done) / rate)} left"
        logger.info("%s: %d%s %s (%.1f %s/s)%s", self.desc, self.done, total, self.unit, rate, self.unit, extra)

    def __iter__(self) -> Iterator[T]:
        for item in self.iterable:  # type: ignore[union-attr]
            yield item
            self.update()
        self.close()

    def __enter__(self) -> LoggedProgress[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def format_duration(seconds: float) -> str:
    """``42 s``, ``3.5 min`` or ``1.2 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def progress(iterable: Iterable[T] | None = None, desc: str = "", total: int | None = None, unit: str = "it",
             mode: str | None = None) -> tqdm | LoggedProgress[T]:
    """Progress over ``iterable``, or (without one) a counter to ``update(n)``, shown as ``mode`` says (one of
    :data:`PROGRESS_MODES`; None: the process's default, see :func:`set_default_progress`): a tqdm bar, a
    :class:`LoggedProgress`, or a silent tqdm for ``none``."""
    mode = _default_mode if mode is None else mode
    _check_mode(mode)
    if mode == "auto":
        mode = ("bar" if sys.stderr.isatty() else "log") if logger.isEnabledFor(logging.INFO) else "none"
    if mode == "log":
        return LoggedProgress(iterable, desc, total, unit)
    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=False, dynamic_ncols=True, disable=mode == "none")
