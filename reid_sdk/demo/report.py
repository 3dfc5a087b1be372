"""The demo's printed text: the comparison table, the parity checks, the search results and the closing summary."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from reid_sdk.demo.pipeline import Evaluation, QueryResult
from reid_sdk.demo.settings import RECOMMENDED
from reid_sdk.export.verify import ParityCheck, Tolerance

#: Wide enough for the longest row label, the camera-aware variant's.
LABEL_WIDTH = 41


def comparison_table(evaluations: Sequence[Evaluation]) -> str:
    """One row per model: retrieval metrics; for trained models also the best stage, its clusters, training time."""
    header = (f"{'model':<{LABEL_WIDTH}} {'rank-1':>7} {'rank-5':>7} {'mAP':>7}   "
              f"{'best stage':>10} {'clusters':>8} {'train s':>8}")
    lines = [header, "-" * len(header)]
    for item in evaluations:
        line = f"{item.label:<{LABEL_WIDTH}} {item.rank1:>7.3f} {item.rank5:>7.3f} {item.mAP:>7.3f}   "
        if item.run is None:
            line += f"{'-':>10} {'-':>8} {'-':>8}"
        else:
            best = item.run.best_stage
            line += f"{best.stage:>10d} {best.clusters_after:>8d} {item.run.seconds:>8.0f}"
        lines.append(line)
    return "\n".join(lines)


def parity_lines(checks: Sequence[ParityCheck], tolerance: Tolerance) -> str:
    """reid-export --verify's lines: ok / FAIL per check, then the verdict."""
    lines = [("ok    " if check.passes(tolerance) else "FAIL  ") + check.describe() for check in checks]
    failed = sum(not check.passes(tolerance) for check in checks)
    lines.append(f"verified: {len(checks)} checks within tolerance (min cosine {tolerance.min_cosine}, "
                 f"max |diff| {tolerance.max_abs_diff})" if not failed else
                 f"verification FAILED: {failed} of {len(checks)} checks beyond tolerance")
    return "\n".join(lines)


def search_lines(results: Sequence[QueryResult]) -> str:
    """Each query's identity and camera, then its matches as identity/camera score ('*' = same person)."""
    lines = []
    for result in results:
        record = result.record
        found = "  ".join(f"{match.identity}/c{match.camera} {match.score:.2f}"
                          f"{'*' if match.identity == record.pid else ' '}" for match in result.matches)
        lines.append(f"query {record.pid:>4}/c{record.camera}  ->  {found}")
    return "\n".join(lines)


def results_document(settings_line: str, evaluations: Sequence[Evaluation], seconds: float,
                     parity_ok: bool) -> dict[str, Any]:
    """The comparison table as a JSON-friendly dict (results.json), naming the variant exported to ONNX."""
    rows = [{"model": item.label, "rank1": item.rank1, "rank5": item.rank5, "mAP": item.mAP,
             **({"best_stage": item.run.best_stage.stage, "train_seconds": round(item.run.seconds, 1)}
                if item.run else {})}
            for item in evaluations]
    return {"settings": settings_line, "models": rows, "exported": RECOMMENDED.name, "onnx_parity": parity_ok,
            "seconds": round(seconds, 1)}


def summary(out: Path, settings_line: str, seconds: float, untrained: Evaluation,
            trained: Mapping[str, Evaluation]) -> str:
    """What ran, where the files are, and the same commands for a site's crops; ``trained`` maps each variant's
    name to its evaluation."""
    maps = ", ".join(f"{name} {item.mAP:.3f}" for name, item in trained.items())
    rank1s = ", ".join(f"{name} {item.rank1:.3f}" for name, item in trained.items())
    runs = "\n".join(f"  {f'runs/{name}/':<27} reid-train run: best.pt, config.yaml, metrics.jsonl, stages.png"
                     for name in trained)
    options = " ".join(f"--set {assignment}" for assignment in RECOMMENDED.overrides)
    return f"""\
reid-demo finished in {seconds / 60:.1f} min ({settings_line})
  mAP    before training {untrained.mAP:.3f} ({untrained.label}); after: {maps}
  rank-1 before training {untrained.rank1:.3f}; after: {rank1s}
  exported, indexed and searched: {RECOMMENDED.name} (the recommended configuration)
files in {out}:
  data/                       synthetic Market-1501 layout (bounding_box_train, query, bounding_box_test)
  initial.pt                  the network before training, where training starts
{runs}
  model.onnx                  runs/{RECOMMENDED.name}/best.pt exported to ONNX (fp32, parity verified)
  gallery/                    FAISS + SQLite gallery of bounding_box_test built with the ONNX model
  stages.png                  mAP / rank-1 / clusters per stage of {RECOMMENDED.name}, the untrained start as a line
  matches.png                 query crops and their top matches in other cameras
  results.json                the table above as JSON
the same on your cameras' crops (Market-1501 names, the camera in each; no labels are used for training):
  reid-train --data /data/site-crops --format market1501 --out runs/site \\
      --set model.backbone=mobilenet_v2 --set model.pretrained=imagenet --set model.input_size=[128,64] \\
      {options} \\
      --set train.first_stage_epochs=4 --set train.lr_step_epoch=3 --set clustering.merge_percent=0.1
      (the paper's method as published, on a GPU: --config paper-market)
  reid-export --model runs/site/best.pt --format onnx --out model.onnx --verify
  reid-index build --model model.onnx --images /data/site-crops --out gallery/
  reid-index search --model model.onnx --gallery gallery/ query.jpg -k 10 --strip matches.png"""
