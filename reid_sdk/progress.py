"""Progress that reaches the user wherever the output goes: a tqdm bar on a terminal, log lines elsewhere.

Under nohup, ``docker logs`` or Slurm, stderr is no terminal and a bar would be one unreadable line (or
nothing); there a line is logged at the first item, then at most every ``interval`` seconds, and at the end.
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


class LoggedProgress(Iterable[T]):
    """Wraps an iterable and logs ``desc: done/total unit (rate/s) postfix`` now and then (see module doc)."""

    def __init__(self, iterable: Iterable[T], desc: str, total: int | None = None, unit: str = "it",
                 interval: float = LOG_INTERVAL_S) -> None:
        self.iterable = iterable
        self.desc = desc
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.unit = unit
        self.interval = interval
        self.postfix: dict[str, Any] = {}
        self.done = 0

    def set_postfix(self, **values: Any) -> None:
        """Values shown at the end of the next line (the same call as tqdm's)."""
        self.postfix = values

    def _log(self, started: float) -> None:
        elapsed = max(time.perf_counter() - started, 1e-9)
        total = f"/{self.total}" if self.total is not None else ""
        extra = "".join(f" {key}={value}" for key, value in self.postfix.items())
        logger.info("%s: %d%s %s (%.1f %s/s)%s", self.desc, self.done, total, self.unit, self.done / elapsed,
                    self.unit, extra)

    def __iter__(self) -> Iterator[T]:
        started = last = time.perf_counter()
        for item in self.iterable:
            yield item
            self.done += 1
            now = time.perf_counter()
            if self.done == 1 or now - last >= self.interval:
                self._log(started)
                last = now
        self._log(started)


def progress(iterable: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> Iterable[T]:
    """A tqdm bar over ``iterable`` when stderr is a terminal, else a :class:`LoggedProgress`; nothing where
    reid_sdk's INFO messages are off (e.g. the non-writing ranks of a distributed run)."""
    if not logger.isEnabledFor(logging.INFO):
        return iterable
    if sys.stderr.isatty():
        return tqdm(iterable, desc=desc, total=total, unit=unit, leave=False, dynamic_ncols=True)
    return LoggedProgress(iterable, desc, total, unit)
