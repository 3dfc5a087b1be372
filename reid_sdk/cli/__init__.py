"""The console scripts: thin shells that parse arguments, call library code and map errors to exit codes.

OpenMP threads sleep at barriers instead of spinning (``OMP_WAIT_POLICY=PASSIVE``, unless the environment says
otherwise): on a CPU shared with other work, GNU OpenMP's spinning made torch 2 to 8x slower
(``benchmarks/cpu_speed.py``). Set here, before any console script imports torch.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
