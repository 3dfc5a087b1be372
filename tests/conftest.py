"""Shared test configuration: keep CPU runs small and deterministic on a 2-core machine."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")
