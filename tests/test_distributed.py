"""torchrun-style data parallelism on the CPU with gloo (2 processes): the same run, V and labels on every
rank, sharded extraction equal to one process, and the first step's gradients equal to one process's."""

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from reid_sdk.synthetic.layouts import PRESETS, SyntheticConfig, generate
from reid_sdk.training.config import load_config
from reid_sdk.training.stage_sgd import StageSGD
from reid_sdk.training.schedules import build_trainer
from reid_sdk.training.trainer import Trainer
from tests.test_trainer import TINY_RUN

WORLD = 2
RUN = [*TINY_RUN, "clustering.max_stages=2", "model.dropout=0", "train.batch_size=4"]
RUN_RECLUSTER = [*TINY_RUN, "model.dropout=0", "train.batch_size=4", "train.schedule=recluster", "recluster.epochs=2",
                 "recluster.iterations=2", "recluster.instances=2", "recluster.k1=6", "recluster.k2=2",
                 "recluster.min_samples=2", "recluster.eps=0.7"]


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp") / "market1501"
    generate("market1501", root, SyntheticConfig(seed=2, sizes=PRESETS["tiny"]), workers=2)
    return root


@contextlib.contextmanager
def _rendezvous_store() -> Iterator[int]:
    """A TCP store this process serves on a port the OS picks, as torchrun's agent does, so no rank races
    another program for a probed "free" port; the ranks join it as clients (TORCHELASTIC_USE_AGENT_STORE)."""
    store = torch.distributed.TCPStore("127.0.0.1", 0, WORLD + 1, is_master=True, wait_for_workers=False)
    try:
        yield store.port
    finally:
        del store


def _spawn(function, *args: str) -> None:
    """Run ``function(rank, port, *args)`` on WORLD processes joined through one rendezvous store."""
    with _rendezvous_store() as port:
        mp.spawn(function, args=(port, *args), nprocs=WORLD, join=True)


def _digest(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def _join(rank: int, port: int) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), TORCHELASTIC_USE_AGENT_STORE="True",
                      OMP_NUM_THREADS="1")
    torch.set_num_threads(1)


def _run_rank(rank: int, port: int, data: str, out: str, schedule: str = "stages") -> None:
    """One rank of a whole run; records per-stage digests of weights, V and labels, and its extraction."""
    _join(rank, port)
    overrides = RUN if schedule == "stages" else [*RUN_RECLUSTER]
    trainer = build_trainer(load_config(None, [f"data.root={data}", *overrides]), out)
    stages = []
    finish = trainer._finish_stage

    def record(stage, count, row):
        finish(stage, count, row)
        stages.append({"weights": [_digest(p) for p in trainer.model.state_dict().values()],
                       "memory": _digest(trainer.memory.table), "labels": trainer.labels.tolist()})
        features = trainer._extract(trainer.splits.train, "check").features.numpy()  # sharded and gathered
        np.save(os.path.join(out, f"features-{rank}.npy"), features)

    trainer._finish_stage = record
    trainer.run()
    assert not torch.distributed.is_initialized()  # the trainer closed the group it created
    with open(os.path.join(out, f"rank-{rank}.json"), "w") as handle:
        json.dump({"stages": stages, "rows": len(trainer.results)}, handle)


def _sgd_for(data: str, rank_batch: int, world) -> tuple[StageSGD, Trainer]:
    trainer = Trainer(load_config(None, [f"data.root={data}", *RUN, f"train.batch_size={rank_batch}"]), "unused")
    return StageSGD(trainer.model, trainer.config.train, trainer._train_dataset(), 0, trainer.device, None, False,
                    world), trainer


def _first_step_gradients(sgd: StageSGD, trainer: Trainer) -> dict[str, np.ndarray]:
    """Gradients of one step on the first batch of epoch seed 7, BatchNorm statistics frozen (no SyncBN on CPU)."""
    from reid_sdk.training.memory import ClusterMemory

    labels = torch.arange(len(trainer.splits.train)) % 5
    memory = ClusterMemory(torch.randn(5, trainer.model.config.embedding_dim, generator=torch.Generator().manual_seed(1)))
    sgd.pass_.train_model.train()
    for module in trainer.model.modules():
        if isinstance(module, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
            module.eval()
    sgd.sampler.set_seed(7)
    images, _, _, index = next(iter(sgd.loader))
    optimizer = torch.optim.SGD(trainer.model.parameters(), lr=0.0)
    sgd.pass_._step(images, labels[index], memory, optimizer, torch.amp.GradScaler("cuda", enabled=False))
    return {name: p.grad.numpy().copy() for name, p in trainer.model.named_parameters() if p.grad is not None}


def _gradient_rank(rank: int, port: int, data: str, out: str) -> None:
    _join(rank, port)
    from reid_sdk.training.distributed import Distributed

    torch.distributed.init_process_group("gloo")
    sgd, trainer = _sgd_for(data, 2, Distributed(rank, WORLD, rank))
    grads = _first_step_gradients(sgd, trainer)
    np.savez(os.path.join(out, f"grads-{rank}.npz"), **grads)
    torch.distributed.destroy_process_group()


def test_two_ranks_train_in_lockstep_and_rank_0_writes(market, tmp_path):
    out = tmp_path / "run"
    _spawn(_run_rank, str(market), str(out))
    ranks = [json.loads((out / f"rank-{rank}.json").read_text()) for rank in range(WORLD)]
    assert ranks[0]["rows"] == 2 and ranks[0]["stages"] == ranks[1]["stages"]  # weights, V, labels identical
    assert len(ranks[0]["stages"]) == 2 and (out / "best.pt").is_file() and len(
        (out / "metrics.jsonl").read_text().splitlines()) == 2
    np.testing.assert_array_equal(np.load(out / "features-0.npy"), np.load(out / "features-1.npy"))


def test_two_ranks_run_the_recluster_schedule_in_lockstep(market, tmp_path):
    """One rank clusters and broadcasts the labels, both train on their shares of every P x K batch."""
    out = tmp_path / "run"
    _spawn(_run_rank, str(market), str(out), "recluster")
    ranks = [json.loads((out / f"rank-{rank}.json").read_text()) for rank in range(WORLD)]
    assert ranks[0]["rows"] == 2 and ranks[0]["stages"] == ranks[1]["stages"]
    assert (out / "best.pt").is_file() and len((out / "metrics.jsonl").read_text().splitlines()) == 2


def test_sharded_extraction_equals_one_process(market, tmp_path):
    """A fresh (seeded) model: the gathered shards equal a single process's extraction, in sample order."""
    _spawn(_extract_rank, str(market), str(tmp_path))
    single = Trainer(load_config(None, [f"data.root={market}", *RUN]), tmp_path / "single")
    expected = single._extract(single.splits.train, "single").features.numpy()
    np.testing.assert_allclose(np.load(tmp_path / "extracted-0.npy"), expected, atol=1e-6)


def _extract_rank(rank: int, port: int, data: str, out: str) -> None:
    _join(rank, port)
    trainer = Trainer(load_config(None, [f"data.root={data}", *RUN]), os.path.join(out, "run"))
    np.save(os.path.join(out, f"extracted-{rank}.npy"),
            trainer._extract(trainer.splits.train, "check").features.numpy())
    torch.distributed.destroy_process_group()


def test_first_step_gradients_equal_one_process_with_the_same_global_batch(market, tmp_path):
    _spawn(_gradient_rank, str(market), str(tmp_path))
    sgd, trainer = _sgd_for(str(market), 2 * WORLD, None)
    expected = _first_step_gradients(sgd, trainer)
    for rank in range(WORLD):
        got = np.load(tmp_path / f"grads-{rank}.npz")
        assert set(got.files) == set(expected)
        for name in expected:
            np.testing.assert_allclose(got[name], expected[name], rtol=1e-4, atol=1e-6, err_msg=name)
