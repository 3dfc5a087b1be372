"""How a CPU training step fits a memory budget (``train.max_memory``): one batch, checkpointed, or in micro-batches.

A training step keeps every activation of its batch for the backward pass: MobileNetV2 at 256 x 128 keeps about
50 MiB per image, so reid-adapt's old batch of 16 clips x 16 frames peaked near 14 GB. The plan is chosen from the
model's own measured activation cost (the bytes autograd saves per image in one small forward pass, all of them
or, with the trunk checkpointed block by block, the blocks' inputs plus the largest block's), the process's
resident memory at start-up and the budget (the smaller of ``train.max_memory`` and what the machine has
available). The first setting that fits wins, fastest first:

1. the whole batch in one pass;
2. the whole batch with the trunk checkpointed (the same gradients for about a third more compute);
3. micro-batches of fewer samples, trunk checkpointed, gradients accumulated: the loss and the lookup table see
   the whole batch (the loss is a mean of per-sample terms against a table fixed during the step), but the
   BatchNorm layers normalise each micro-batch by its own statistics.

When not even 2 samples per micro-batch fit, training is refused at start-up with one line, instead of the kernel
killing it mid-run.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import psutil
import torch
from torch import nn

from reid_sdk.model import ReIDNet
from reid_sdk.training.config import ConfigError, RunConfig
from reid_sdk.training.memory_size import format_memory, parse_memory

#: Peak resident growth per byte autograd saves: measured 0.85 (one pass) and 0.9 (checkpointed) on MobileNetV2
#: steps at 256 x 128 (benchmarks/adapt_memory.py; saved tensors are freed as the backward pass goes); 1.0 keeps
#: a margin.
ACTIVATION_OVERHEAD = 1.0
#: Resident memory the rest of a run adds after start-up (extraction's features, the data loader, clustering).
RUN_MARGIN = 512 << 20
MIN_MICRO_BATCH = 2  # the embedding head's BatchNorm1d needs two samples in training mode


class MemoryBudgetError(ConfigError):
    """No training setting fits the memory budget."""


@dataclass(frozen=True)
class ActivationCost:
    """Bytes autograd keeps per image for the backward pass: ``full`` without checkpointing, ``checkpointed`` with
    the trunk checkpointed block by block (each block's input, everything outside the trunk, and the largest
    block's activations while it is recomputed)."""

    full: float
    checkpointed: float


def measure_activation_cost(model: ReIDNet, images: int = 2) -> ActivationCost:
    """Run one training-mode forward pass of ``images`` random images through ``model`` and count the bytes autograd
    saves, by trunk block (tensors sharing storage counted once); the model's weights and statistics are unchanged."""
    blocks = model.trunk_blocks()
    current: list[int | None] = [None]
    saved: dict[int | None, dict[int, int]] = {}
    block_inputs = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        saved.setdefault(current[0], {})[storage.data_ptr()] = storage.nbytes()
        return tensor

    def enter(index: int):
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            nonlocal block_inputs
            current[0] = index
            block_inputs += inputs[0].untyped_storage().nbytes()
        return hook

    def leave(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        current[0] = None

    state = {name: value.clone() for name, value in model.state_dict().items()}
    was_training, was_checkpointed = model.training, model.checkpoint_trunk
    model.train()
    model.checkpoint_trunk = False
    handles = [handle for index, block in enumerate(blocks)
               for handle in (block.register_forward_pre_hook(enter(index)), block.register_forward_hook(leave))]
    first = next(model.parameters())
    try:
        with torch.random.fork_rng(devices=[]), torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            model(torch.randint(0, 256, (images, 3, *model.input_size), dtype=torch.uint8,
                                device=first.device))
    finally:
        for handle in handles:
            handle.remove()
        model.load_state_dict(state)
        model.train(was_training)
        model.checkpoint_trunk = was_checkpointed
    per_block = {key: sum(tensors.values()) for key, tensors in saved.items()}
    outside = per_block.pop(None, 0)
    full = outside + sum(per_block.values())
    checkpointed = outside + block_inputs + max(per_block.values(), default=0)
    return ActivationCost(full=full / images, checkpointed=checkpointed / images)


@dataclass(frozen=True)
class StepPlan:
    """How one training step runs: ``micro_batch`` samples per forward / backward pass (the batch size: one pass),
    the trunk checkpointed or not, and the resident memory it is expected to peak at."""

    batch_size: int
    micro_batch: int
    checkpoint_trunk: bool
    expected_peak: int

    def describe(self) -> str:
        """E.g. ``batch 16 in micro-batches of 4, trunk checkpointed, expected peak 3.10 GiB``."""
        how = "in one pass" if self.micro_batch >= self.batch_size else f"in micro-batches of {self.micro_batch}"
        checkpointed = ", trunk checkpointed" if self.checkpoint_trunk else ""
        return f"batch {self.batch_size} {how}{checkpointed}, expected peak {format_memory(self.expected_peak)}"


def plan_step(batch_size: int, frames: int, cost: ActivationCost, resident: int, budget: int,
              model_bytes: int = 0) -> StepPlan:
    """The fastest setting of a step of ``batch_size`` samples of ``frames`` images each whose expected peak
    (``resident`` + optimiser state (2 x ``model_bytes``) + :data:`RUN_MARGIN` + the micro-batch's activations x
    :data:`ACTIVATION_OVERHEAD`) fits ``budget`` bytes; MemoryBudgetError when none does (see the module docstring)."""
    fixed = resident + 2 * model_bytes + RUN_MARGIN

    def peak(samples: int, per_image: float) -> int:
        return int(fixed + ACTIVATION_OVERHEAD * samples * frames * per_image)

    micro_batches = sorted({-(-batch_size // passes) for passes in range(2, batch_size // MIN_MICRO_BATCH + 1)},
                           reverse=True)  # near-equal parts of >= 2 samples (micro_batches splits so)
    candidates = [(batch_size, False), (batch_size, True), *((micro, True) for micro in micro_batches)]
    for micro, checkpointed in candidates:
        expected = peak(micro, cost.checkpointed if checkpointed else cost.full)
        if expected <= budget:
            return StepPlan(batch_size, micro, checkpointed, expected)
    smallest = peak(min(MIN_MICRO_BATCH, batch_size), cost.checkpointed)
    what = f"{frames}-frame clips" if frames > 1 else "images"
    raise MemoryBudgetError(
        f"training needs about {format_memory(smallest)} even at its smallest setting ({MIN_MICRO_BATCH} {what} per "
        f"pass, trunk checkpointed) but the budget is {format_memory(budget)}: raise train.max_memory (reid-adapt "
        f"--max-memory) or free memory, or lower data.frames_per_tracklet / model.input_size")


def micro_batches(samples: int, micro_batch: int) -> int:
    """Into how many near-equal parts a batch of ``samples`` is split so that none holds more than ``micro_batch``
    samples, nor fewer than two (when the batch has two)."""
    return max(1, min(-(-samples // micro_batch), samples // MIN_MICRO_BATCH))


def available_budget(max_memory: str | None) -> int:
    """The budget in bytes: what this process holds plus what the machine has available, capped at ``max_memory``."""
    machine = psutil.Process().memory_info().rss + psutil.virtual_memory().available
    return min(machine, parse_memory(max_memory)) if max_memory else machine


def plan_training_step(model: ReIDNet, batch_size: int, frames: int, max_memory: str | None) -> StepPlan:
    """:func:`plan_step` for ``model`` in this process now: its measured activation cost, the resident memory, the
    budget of :func:`available_budget`."""
    model_bytes = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return plan_step(batch_size, frames, measure_activation_cost(model), psutil.Process().memory_info().rss,
                     available_budget(max_memory), model_bytes)


def plan_run_step(config: RunConfig, video: bool, device: torch.device, model: ReIDNet | None = None
                  ) -> StepPlan | None:
    """On a CPU, :func:`plan_training_step` for ``config``'s batch, clip length (``video``) and budget, on ``model``
    (default: the config's network, untrained: the cost depends on the shapes alone); None on a GPU, whose memory
    is not the host's."""
    if device.type != "cpu":
        return None
    if model is None:
        model = ReIDNet(replace(config.model, pretrained=None)).to(memory_format=torch.channels_last)
        model.freeze_trunk(config.train.frozen_stages)
    frames = config.data.frames_per_tracklet if video else 1
    return plan_training_step(model, config.train.batch_size, frames, config.train.max_memory)
