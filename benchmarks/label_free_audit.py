"""The label-free model choice, audited: on constructed features (identity, noisier, random, camera, and the
degenerate kinds that fooled the uncorrected agreement) and on the stage checkpoints of real training runs,
whose stage is chosen against the oracle (highest mAP) stage; and its cost next to one merge stage.

    PYTHONPATH=. python -m benchmarks.label_free_audit                       # /tmp/exp/run-*, /tmp/rs/full/run-*
    PYTHONPATH=. python -m benchmarks.label_free_audit --runs DIR [DIR ...] --workdir /tmp/label_free_audit

A run is audited on the stages that have both a metrics row (with ``mAP``) and a checkpoint, and only when every
row has one (``train.keep_checkpoints=0`` keeps them all). Its training set's features are extracted once per
stage on the CPU and cached in ``--workdir`` (run folders are only read). Both scores are computed from the
checkpoint, seeded as the trainers seed them: the old one is the uncorrected cross-camera agreement (the
``label_free_score`` of runs trained before the chance correction, equal to it up to ties), the new one the
chance-corrected score; ``recorded_score`` is what the run's row holds (either, by when it trained). The untrained start
(the run's model config before any stage) is scored too, and its mAP read from ``start-<seed>.json`` beside the
data root when ``benchmarks.real_start`` wrote one. Identities are read only for the cross-camera rank-1 column,
never by a score.
"""

from __future__ import annotations

import argparse
import glob
import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks.common import write_results
from reid_sdk.datasets import load_dataset
from reid_sdk.model import ReIDNet
from reid_sdk.training.clustering import merge_stage
from reid_sdk.training.config import load_config
from reid_sdk.training.extraction import extract_records
from reid_sdk.training.model_choice import label_free_scores
from reid_sdk.training.run_dir import RunDirectory

DEFAULT_RUNS = ("/tmp/exp/run-*", "/tmp/rs/full/run-*")


def cross_camera_rank1(features: torch.Tensor, cameras: torch.Tensor, pids: torch.Tensor) -> float:
    """Share of samples whose most similar sample from another camera is the same identity (cosine)."""
    unit = F.normalize(features.float(), dim=1)
    similarity = (unit @ unit.T).masked_fill_(cameras[:, None] == cameras[None, :], -float("inf"))
    return float((pids[similarity.argmax(dim=1)] == pids).float().mean())


def constructed_table(seeds: list[int]) -> dict[str, dict[str, Any]]:
    """Per kind of constructed feature and seed: the new score and the uncorrected agreement, with and without
    cameras, and the cross-camera rank-1. The features are the tests' own construction (imported from them here
    only, so that ``real_start`` can use :func:`stage_features` without the tests)."""
    from tests.test_label_free_choice import CAMERAS_PER_IDENTITY, CROPS_PER_CAMERA, constructed_features

    table: dict[str, dict[str, Any]] = {}
    for seed in seeds:
        kinds, cameras, pseudo_labels = constructed_features(seed)
        pids = torch.arange(len(cameras)) // (CAMERAS_PER_IDENTITY * CROPS_PER_CAMERA)  # crops come by identity
        for name, features in kinds.items():
            with_cameras = label_free_scores(features, pseudo_labels, pseudo_labels, cameras)
            without = label_free_scores(features, pseudo_labels, pseudo_labels, None)
            table.setdefault(name, {})[f"seed {seed}"] = {
                "cross_camera_rank1": round(cross_camera_rank1(features, cameras, pids), 3),
                "with_cameras": {"label_free_score": round(with_cameras["label_free_score"], 3),
                                 "uncorrected_agreement": round(with_cameras["cross_camera_agreement"], 3)},
                "without_cameras": {"label_free_score": round(without["label_free_score"], 3),
                                    "uncorrected_agreement": round(without["neighbour_agreement"], 3)}}
    return table


def stage_features(run: Path, stage: int | None, workdir: Path) -> dict[str, torch.Tensor]:
    """The training set's features under the run's stage checkpoint (``None``: the untrained start), with the
    cameras and identities; cached in ``workdir``."""
    run_dir = RunDirectory(run)
    source = run_dir.config if stage is None else run_dir.stage_path(stage)
    version = source.stat().st_mtime_ns  # a run folder rewritten since is extracted again
    cache = workdir / "features" / f"{run.name}-{-1 if stage is None else stage}-{version}.pt"
    if cache.is_file():
        return torch.load(cache)
    config = load_config(run_dir.config)
    records = load_dataset(config.data.root, config.data.format).train
    torch.manual_seed(config.train.seed)
    model = ReIDNet(config.model)
    if stage is not None:
        model.load_state_dict(run_dir.load_stage(stage)["model_state"])
    features = extract_records(model, records, torch.device("cpu"), 128, 0, None, None, False,
                               desc=f"{run.name} stage {stage}").features
    value = {"features": features, "cameras": torch.tensor([record.camera for record in records]),
             "pids": torch.tensor([record.pid for record in records])}
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(value, cache)
    return value


def audit_run(run: Path, workdir: Path) -> dict[str, Any] | None:
    """Old and new score per stage, the stages each picks, the oracle, and the start; None when a stage's
    checkpoint is missing."""
    run_dir = RunDirectory(run)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rows = [row for row in rows if row.get("mAP") is not None]
    if not rows or not all(run_dir.stage_path(row["stage"]).is_file() for row in rows):
        return None
    config = load_config(run_dir.config)
    stages = []
    for row in rows:
        data = stage_features(run, row["stage"], workdir)
        seed = config.train.seed * 1000 + row["stage"]  # as the trainers seed the stage's scores
        singletons = torch.arange(len(data["features"]))
        new = label_free_scores(data["features"], singletons, singletons, data["cameras"], seed=seed)
        stages.append({"stage": row["stage"], "mAP": round(row["mAP"], 4),
                       "recorded_score": round(row["label_free_score"], 4),
                       "old_score": round(new["cross_camera_agreement"], 4),
                       "new_score": round(new["label_free_score"], 4),
                       "train_cross_camera_rank1": round(cross_camera_rank1(data["features"], data["cameras"],
                                                                            data["pids"]), 3)})
    start = stage_features(run, None, workdir)
    singletons = torch.arange(len(start["features"]))
    start_row: dict[str, Any] = {"new_score": round(label_free_scores(start["features"], singletons, singletons,
                                                                      start["cameras"])["label_free_score"], 4)}
    start_file = Path(config.data.root).parent / f"start-{config.train.seed}.json"
    if start_file.is_file():
        start_row["mAP"] = round(json.loads(start_file.read_text())["mAP"], 4)
    oracle, old, new = (max(stages, key=lambda stage: stage[key]) for key in ("mAP", "old_score", "new_score"))
    summary = {"oracle_stage": oracle["stage"], "oracle_mAP": oracle["mAP"], "old_stage": old["stage"],
               "old_mAP": old["mAP"], "new_stage": new["stage"], "new_mAP": new["mAP"],
               "last_stage": stages[-1]["stage"], "last_mAP": stages[-1]["mAP"],
               "spearman_old": _spearman([s["old_score"] for s in stages], [s["mAP"] for s in stages]),
               "spearman_new": _spearman([s["new_score"] for s in stages], [s["mAP"] for s in stages])}
    if "mAP" in start_row:
        summary.update({f"{which}_below_start": summary[f"{which}_mAP"] < start_row["mAP"]
                        for which in ("old", "new", "last")})
    return {"run": str(run), "schedule": config.train.schedule, "summary": summary, "start": start_row,
            "stages": stages}


def _spearman(first: list[float], second: list[float]) -> float | None:
    """Spearman's rank correlation (average ranks on ties); None for fewer than 3 values."""
    if len(first) < 3:
        return None

    def ranks(values: list[float]) -> torch.Tensor:
        tensor = torch.tensor(values, dtype=torch.float64)
        return (tensor[:, None] > tensor[None, :]).sum(1) + 0.5 * ((tensor[:, None] == tensor[None, :]).sum(1) - 1)

    a, b = ranks(first).double(), ranks(second).double()
    a, b = a - a.mean(), b - b.mean()
    return round(float((a @ b) / (a.norm() * b.norm()).clamp(min=1e-12)), 3)


def cost(count: int, dim: int) -> dict[str, float]:
    """Seconds of the label-free scores (with cameras) and of one merge stage (imd_cpd, 5 % merges) on random
    L2-normalised (count, dim) features on this machine's threads."""
    generator = torch.Generator().manual_seed(0)
    features = F.normalize(torch.randn(count, dim, generator=generator), dim=1)
    cameras = torch.randint(0, 6, (count,), generator=generator)
    singletons = torch.arange(count)
    timer = time.perf_counter()
    label_free_scores(features, singletons, singletons, cameras)
    scores_seconds = time.perf_counter() - timer
    timer = time.perf_counter()
    merge_stage(features, singletons, count // 20, "imd_cpd", 0.3, 0.005)
    merge_seconds = time.perf_counter() - timer
    return {"samples": count, "dim": dim, "threads": torch.get_num_threads(),
            "label_free_scores_s": round(scores_seconds, 2), "merge_stage_s": round(merge_seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="*", default=None, help="run folders (default: /tmp/exp/run-*, "
                                                                "/tmp/rs/full/run-*)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/label_free_audit"), help="feature cache")
    parser.add_argument("--cost-samples", type=int, default=12936, help="N of the cost comparison (0: skip it)")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/label_free_audit.json)")
    args = parser.parse_args()
    runs = [Path(run) for run in (args.runs or sorted(p for pattern in DEFAULT_RUNS for p in glob.glob(pattern)))]
    audits = [audit for audit in (audit_run(run, args.workdir) for run in runs) if audit is not None]
    results = {"constructed": constructed_table([0, 1]), "runs": audits,
               "skipped_runs": sorted(str(run) for run in set(runs) - {Path(a["run"]) for a in audits})}
    if args.cost_samples:
        results["cost"] = cost(args.cost_samples, 2048)
    print(json.dumps({"summaries": {a["run"]: a["summary"] for a in audits}, "cost": results.get("cost")}, indent=1))
    print("wrote", write_results("label_free_audit", results, args.out))


if __name__ == "__main__":
    main()
