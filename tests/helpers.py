"""Small builders shared by tests: tiny networks, random crops, a Python without some modules, worker threads."""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

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


@functools.cache
def _tiny_trained_weights(seed: int, steps: int, overrides: tuple) -> dict:
    """State dict of :func:`tiny_trained_model` (trained once per process and arguments)."""
    import torch
    import torch.nn.functional as F

    from reid_sdk.model import ReIDNet
    from reid_sdk.inference.preprocess import preprocess_batch
    from reid_sdk.synthetic.layouts import Shot, SyntheticConfig, SyntheticWorld

    torch.manual_seed(seed)
    model = ReIDNet(tiny_config(**dict(overrides)))
    identities, shots = 8, 6
    world = SyntheticWorld(SyntheticConfig(seed=seed + 100, image_size=model.input_size))
    crops = [world.render(Shot(path="", pid=1 + i // shots, camera=1 + i % shots, stream=(i,)))[0]
             for i in range(identities * shots)]
    images = torch.from_numpy(preprocess_batch(crops, model.input_size))
    labels = torch.arange(identities).repeat_interleave(shots)
    centres = torch.nn.Parameter(torch.randn(identities, model.config.embedding_dim))
    optimizer = torch.optim.SGD([*model.parameters(), centres], lr=0.05, momentum=0.9)
    order = torch.Generator().manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: one thread is as fast, and immune to a busy machine
    try:
        model.train()
        for _ in range(steps):
            batch = torch.randperm(len(labels), generator=order)[:16]
            logits = 16.0 * model(images[batch]).embedding @ F.normalize(centres, dim=1).T
            loss = F.cross_entropy(logits, labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        # batch-norm running statistics of the final weights (a dozen steps leave them lagging far behind)
        torch.optim.swa_utils.update_bn(images.split(16), model)
    finally:
        torch.set_num_threads(threads)
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def tiny_trained_model(seed: int = 0, steps: int = 12, **overrides):
    """A tiny ReIDNet trained for a few seconds to tell rendered identities apart, in eval mode (a fresh copy).

    Softmax over 8 identities on the normalised embedding, SGD on the whole network: its batch-norm
    statistics and activation ranges come from pedestrian crops, as INT8 calibration and low-precision
    checks assume of a trained model (a random-init network's activations explode beyond any int8 scale).
    """
    from reid_sdk.model import ReIDNet

    model = ReIDNet(tiny_config(**overrides))
    model.load_state_dict(_tiny_trained_weights(seed, steps, tuple(sorted(overrides.items()))))
    return model.eval()


def tiny_model_files(root: Path, input_size: tuple[int, int]) -> dict[str, Path]:
    """:func:`tiny_trained_model` saved as a checkpoint, exported to fp32 ONNX and to INT8 ONNX (calibrated on
    64 rendered pedestrians) under ``root``: keys ``checkpoint``, ``fp32``, ``int8``."""
    from reid_sdk.export.int8 import export_onnx_int8
    from reid_sdk.export.onnx_export import export_onnx
    from reid_sdk.model import save_checkpoint

    checkpoint = save_checkpoint(tiny_trained_model(input_size=input_size), root / "model.pt")
    return {"checkpoint": checkpoint, "fp32": export_onnx(checkpoint, root / "model.onnx"),
            "int8": export_onnx_int8(checkpoint, root / "model-int8.onnx", max_images=64)}
