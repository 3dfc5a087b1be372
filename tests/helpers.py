"""Small builders shared by tests: tiny networks, random crops, a Python without some modules, worker threads,
a read-only folder."""

from __future__ import annotations

import contextlib
import errno
import functools
import os
from pathlib import Path

import numpy as np


# reid-adapt's memory budget for tests: its 4 GiB default counts the whole process's resident memory, and a pytest
# process holds gigabytes after many tests, so the tiny runs would be refused depending on which tests ran first.
TEST_MEMORY_BUDGET = "64GiB"


def tiny_config(**overrides):
    """A ResNet-18 at 64 x 32 with random init: the model every fast CPU test uses."""
    from reid_sdk.model import ModelConfig

    values = dict(backbone="resnet18", input_size=(64, 32), pretrained=None, embedding_dim=64)
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


def with_running_statistics(model, seed: int = 0):
    """``model`` with every BatchNorm2d's running mean and variance drawn away from 0 / 1 (as after training)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(torch.rand(module.num_features, generator=generator) - 0.5)
            module.running_var.copy_(0.5 + 1.5 * torch.rand(module.num_features, generator=generator))
    return model


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


def pooling_onnx(path: Path, size: tuple[int, int] = (64, 32), feature_dim: int = 12, metadata=None,
                 extra_input: bool = False, zero: bool = False) -> Path:
    """A tiny ONNX graph built with the onnx package (no exporter): uint8 N x 3 x H x W -> mean colour -> (N, D).

    ``metadata`` (a ModelMetadata) is written as reid-sdk metadata, true or not; ``extra_input`` adds a second
    graph input; ``zero`` makes every feature 0.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inputs = [helper.make_tensor_value_info("images", TensorProto.UINT8, ["batch", 3, *size])]
    if extra_input:
        inputs.append(helper.make_tensor_value_info("extra", TensorProto.FLOAT, ["batch", 1]))
    weights = np.zeros((3, feature_dim), np.float32) if zero else np.arange(1, 3 * feature_dim + 1, dtype=np.float32)
    nodes = [helper.make_node("Cast", ["images"], ["pixels"], to=TensorProto.FLOAT),
             helper.make_node("ReduceMean", ["pixels"], ["colour"], axes=[2, 3], keepdims=0),
             helper.make_node("MatMul", ["colour", "weights"], ["features"])]
    output = helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", feature_dim])
    graph = helper.make_graph(nodes, "pooling", inputs, [output],
                              initializer=[numpy_helper.from_array(weights.reshape(3, feature_dim), "weights")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    for key, value in (metadata.to_strings() if metadata is not None else {}).items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, path)
    return path


# What opening each of broken_onnx_models' files must say (a regex that follows the file's name).
BROKEN_ONNX_ERRORS = {
    "empty": r" is empty \(0 bytes\), so it holds no ONNX model",
    "truncated": r" is not a loadable ONNX model: ",
    "input_size": r": its reid-sdk metadata contradicts its graph \(input_size 128x64 but the graph takes 64x32\)",
    "feature_dim": r": its reid-sdk metadata contradicts its graph \(feature_dim 8 but the graph returns 12\)",
    "two_inputs": r" takes 2 inputs \(images, extra\); the SDK feeds one N x 3 x H x W image input",
}


def broken_onnx_models(folder: Path) -> dict[str, Path]:
    """ONNX files that must be refused when opened, keyed as :data:`BROKEN_ONNX_ERRORS`: 0 bytes, cut in half,
    reid-sdk metadata contradicting the graph's input size or feature dim, a second graph input."""
    from reid_sdk.inference.model_contract import ModelMetadata

    folder.mkdir(parents=True, exist_ok=True)
    good = ModelMetadata(input_size=(64, 32), feature_dim=12)
    files = {"input_size": pooling_onnx(folder / "input_size.onnx", metadata=ModelMetadata((128, 64), 12)),
             "feature_dim": pooling_onnx(folder / "feature_dim.onnx", metadata=ModelMetadata((64, 32), 8)),
             "two_inputs": pooling_onnx(folder / "two_inputs.onnx", metadata=good, extra_input=True),
             "empty": folder / "empty.onnx", "truncated": folder / "truncated.onnx"}
    files["empty"].write_bytes(b"")
    whole = pooling_onnx(folder / "whole.onnx", metadata=good).read_bytes()
    files["truncated"].write_bytes(whole[: len(whole) // 2])
    return files


def refuse_writes_under(monkeypatch, folder: Path, code: int = errno.EACCES) -> None:
    """Make ``folder`` and everything in it read-only for this process with OSError ``code`` (EACCES: chmod -R a-w,
    EROFS: a read-only mount), even for root, whom chmod does not stop: os.open for writing and os.mkdir fail."""
    writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT

    def inside(path) -> bool:
        return isinstance(path, (str, os.PathLike)) and Path(path).absolute().is_relative_to(folder.absolute())

    def refusing(call, refused):
        def guarded(path, *args, **kwargs):
            if inside(path) and refused(path, *args):
                if call is real_mkdir and Path(path).exists():
                    raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path))
                raise OSError(code, os.strerror(code), str(path))
            return call(path, *args, **kwargs)
        return guarded

    real_open, real_mkdir = os.open, os.mkdir
    monkeypatch.setattr(os, "open", refusing(real_open, lambda path, flags=0, *rest: flags & writing))
    monkeypatch.setattr(os, "mkdir", refusing(real_mkdir, lambda path, *rest: True))


def ctrl_c_at_gallery_add(patcher, call: int = 2) -> None:
    """Make the ``call``-th ``Gallery.add`` raise KeyboardInterrupt (a Ctrl-C mid-ingest); ``patcher``: pytest's
    monkeypatch or one of its contexts, which undoes it."""
    from reid_sdk.gallery import Gallery

    real_add, calls = Gallery.add, []

    def add_then_ctrl_c(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise KeyboardInterrupt
        return real_add(self, *args, **kwargs)

    patcher.setattr(Gallery, "add", add_then_ctrl_c)
