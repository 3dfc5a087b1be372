"""The demo's six steps in order, printing what each shows: render, train both linkages, evaluate, export and
verify, build and search a gallery, summarise (``reid-demo`` parses its options and calls :func:`run_demo`)."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

from reid_sdk.demo import pipeline, report
from reid_sdk.demo.pipeline import Evaluation
from reid_sdk.demo.settings import DemoSettings
from reid_sdk.synthetic.layouts import sample_crops
from reid_sdk.training.plot import plot_stages

log = logging.getLogger(__name__)

MARKER = ".reid-demo"
#: What a demo writes into its folder: a rerun replaces exactly these.
OUTPUTS = ("data", "runs", "initial.pt", "model.onnx", "gallery", "matches.png", "stages.png",
           "results.json")


def prepare_output(out: Path) -> None:
    """Create ``out``; a folder from an earlier demo is cleared of the demo's files, any other non-empty one refused."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file")
    if out.is_dir() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise ValueError(f"--out {out} is not empty and holds no earlier demo; choose another folder")
        for name in OUTPUTS:
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by reid-demo; a rerun replaces this folder's demo files\n")


def run_demo(settings: DemoSettings, out: Path, device: str) -> bool:
    """The six steps into ``out`` (see :func:`prepare_output`), training on ``device``; prints the tables as they
    come and returns whether the ONNX export passed its parity checks."""
    start = time.perf_counter()
    model = settings.run.model
    network = f"{model.backbone}{' + non-local' if model.non_local else ''}"
    settings_line = f"{settings.mode} mode on {device}: {network} at {model.input_size[0]} x {model.input_size[1]}"
    print(f"reid-demo: {settings_line}\ndifficulty: {settings.describe_difficulty()}")
    if settings.mode == "quick":
        print("--quick: tiny data and two short stages; its numbers only check that every step runs, "
              "they say nothing about the method (run without --quick for that)")

    log.info("[1/6] rendering the synthetic dataset into %s", out / "data")
    print(pipeline.render_dataset(out / "data", settings.synthetic))
    evaluations = _train_and_compare(settings, out, device)
    best = evaluations[1].run.best
    parity_ok = _export_and_verify(settings, best, out / "model.onnx", device)
    _search(settings, out, device)

    log.info("[6/6] done")
    seconds = time.perf_counter() - start
    document = report.results_document(settings_line, evaluations, seconds, parity_ok)
    (out / "results.json").write_text(json.dumps(document, indent=2) + "\n")
    print()
    print(report.summary(out, settings_line, seconds, evaluations[1], evaluations[0]))
    return parity_ok


def _train_and_compare(settings: DemoSettings, out: Path, device: str) -> list[Evaluation]:
    """Steps 2-3: both linkages from the same initial weights, then the comparison table and stages.png."""
    data = out / "data"
    initial = pipeline.save_initial_weights(settings.run.model, settings.seed, out / "initial.pt")
    runs = {}
    for linkage in ("imd_cpd", "buc"):
        log.info("[2/6] training with the %s linkage (reid-train, up to %s stages)", linkage,
                 settings.run.clustering.max_stages)
        runs[linkage] = pipeline.train(settings.run, data, linkage, initial, out / "runs" / linkage)

    log.info("[3/6] evaluating on the query / gallery split")
    evaluations = [
        pipeline.evaluate("untrained (initial weights)", initial, data, device),
        pipeline.evaluate("imd_cpd (IMD + 0.3 CPD, the paper)", runs["imd_cpd"].best, data, device, runs["imd_cpd"]),
        pipeline.evaluate("buc (BUC's linkage)", runs["buc"].best, data, device, runs["buc"]),
    ]
    print("\nretrieval on the synthetic query / gallery split (Market-1501 protocol):")
    print(report.comparison_table(evaluations))
    untrained = evaluations[0]
    plot_stages([result.as_dict() for result in runs["imd_cpd"].results], out / "stages.png",
                title="synthetic demo: imd_cpd", baseline={"mAP": untrained.mAP, "rank1": untrained.rank1})  # the kept stage: the row marked best
    return evaluations


def _export_and_verify(settings: DemoSettings, checkpoint: Path, onnx_path: Path, device: str) -> bool:
    """Step 4: ONNX export of the best model and the parity checks; True when all pass."""
    log.info("[4/6] exporting the best imd_cpd model to ONNX and checking parity with torch")
    crops = sample_crops(settings.parity_crops, seed=settings.seed + 1, image_size=settings.synthetic.image_size)
    checks, tolerance = pipeline.export_and_verify(checkpoint, onnx_path, crops, device)
    print(f"\nONNX parity of {onnx_path} against the torch fp32 checkpoint:")
    print(report.parity_lines(checks, tolerance))
    return all(check.passes(tolerance) for check in checks)


def _search(settings: DemoSettings, out: Path, device: str) -> None:
    """Step 5: a gallery of the gallery split built with the ONNX model, searched with a few query crops."""
    log.info("[5/6] building a gallery with the ONNX model and searching it")
    model, gallery = out / "model.onnx", out / "gallery"
    entries = pipeline.build_gallery(model, out / "data", gallery, device)
    print(f"gallery of {entries} entries written to {gallery}")
    results = pipeline.search_queries(model, gallery, out / "data", settings.num_queries, settings.top_k, device)
    pipeline.write_matches(results, out / "matches.png")
    print(f"\ntop {settings.top_k} gallery matches in other cameras (identity/camera score, * = same person):")
    print(report.search_lines(results))
