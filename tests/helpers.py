"""Small builders shared by tests: tiny networks, random crops, a Python without some modules, worker threads."""

from __future__ import annotations

import contextlib

import numpy as np


def tiny_config(**overrides):
    """A ResNet-18 at 64 x 32 with random init: the model every fast CPU test uses."""
    from reid_sdk.model import ModelConfig

    values = dict(depth=18, input_size=(64, 32), pretrained=None, embedding_dim=64)
    values.update(overrides)
    return ModelConfig(**values)


def tiny_model(seed: int = 0, **overrides):
    """A tiny ReIDNet in eval mode whose non-local blocks are NOT the identity (so they are exercised)."""
    import torch

    from reid_sdk.model import ReIDNet

    torch.manual_seed(seed)
    model = ReIDNet(tiny_config(**overrides))
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
            torch.nn.init.uniform_(module.bias, -0.1, 0.1)
    return model.eval()


def random_crops(count: int, seed: int = 0, min_size: int = 16, max_size: int = 96) -> list[np.ndarray]:
    """Random BGR uint8 crops of varied sizes."""
    rng = np.random.default_rng(seed)
    return [
        rng.integers(0, 256, (rng.integers(min_size, max_size), rng.integers(min_size // 2, max_size // 2), 3),
                     dtype=np.uint8)
        for _ in range(count)
    ]


def run_python_without(modules: tuple[str, ...], code: str):
    """Run ``code`` in a fresh interpreter where importing any of ``modules`` fails (as if not installed)."""
    import subprocess
    import sys
    import textwrap

    blocker = f"import sys\nfor name in {modules!r}:\n    sys.modules[name] = None\n"
    return subprocess.run([sys.executable, "-c", blocker + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120)


@contextlib.contextmanager
def threads_running(worker, count: int):
    """Run ``worker(seed)`` for seeds 0..count-1 in threads while the block runs; re-raise the first failure."""
    import threading

    errors: list[BaseException] = []

    def guarded(seed: int) -> None:
        try:
            worker(seed)
        except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(error)

    threads = [threading.Thread(target=guarded, args=(seed,)) for seed in range(count)]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]
