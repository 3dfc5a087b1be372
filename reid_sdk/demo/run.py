"""The demo's six steps in order, printing what each shows: render, train the camera-aware variant (and the paper's
method beside it when comparing), evaluate, export and verify, build and search a gallery, summarise
(``reid-demo`` parses its options and calls :func:`run_demo`)."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

from reid_sdk.demo import pipeline, report
from reid_sdk.demo.pipeline import Evaluation
from reid_sdk.demo.settings import RECOMMENDED, DemoSettings
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
    settings_line = f"{settings.mode} mode on {device}: {settings.describe_network()}"
    print(f"reid-demo: {settings_line}\ndifficulty: {settings.describe_difficulty()}")
    if settings.start_note:
        print(settings.start_note)
    if settings.mode == "quick":
        print("--quick: tiny data and two short stages; its numbers only check that every step runs, "
              "they say nothing about the method (run without --quick for that)")

    log.info("[1/6] rendering the synthetic dataset into %s", out / "data")
    print(pipeline.render_dataset(out / "data", settings.synthetic))
    untrained, trained = _train_and_compare(settings, out, device)
    recommended = trained[RECOMMENDED.name]
    parity_ok = _export_and_verify(settings, recommended.run.best, out / "model.onnx", device)
    _search(settings, out, device)

    log.info("[6/6] done")
    seconds = time.perf_counter() - start
    evaluations = [untrained, *trained.values()]
    document = report.results_document(settings_line, evaluations, seconds, parity_ok)
    (out / "results.json").write_text(json.dumps(document, indent=2) + "\n")
    print()
    print(report.summary(out, settings_line, seconds, untrained, trained))
    return parity_ok


def _train_and_compare(settings: DemoSettings, out: Path, device: str) -> tuple[Evaluation, dict[str, Evaluation]]:
    """Steps 2-3: the settings' variants from the same initial weights, then the comparison table and stages.png (the
    recommended variant against the untrained start). Returns the untrained row and each variant's by name."""
    data = out / "data"
    initial = pipeline.save_initial_weights(settings.run.model, settings.seed, out / "initial.pt")
    runs = {}
    for variant in settings.variants:
        log.info("[2/6] training %s (reid-train, up to %s stages)", variant.label, settings.run.clustering.max_stages)
        runs[variant.name] = pipeline.train(settings.run, data, variant.name, variant.overrides, initial,
                                            out / "runs" / variant.name)

    log.info("[3/6] evaluating on the query / gallery split")
    untrained = pipeline.evaluate(settings.start_label, initial, data, device)
    trained = {variant.name: pipeline.evaluate(variant.label, runs[variant.name].best, data, device, runs[variant.name])
               for variant in settings.variants}
    print("\nretrieval on the synthetic query / gallery split (Market-1501 protocol):")
    print(report.comparison_table([untrained, *trained.values()]))
    plot_stages([result.as_dict() for result in runs[RECOMMENDED.name].results], out / "stages.png",
                title=f"synthetic demo: {RECOMMENDED.label}", baseline={"mAP": untrained.mAP, "rank1": untrained.rank1})
    return untrained, trained


def _export_and_verify(settings: DemoSettings, checkpoint: Path, onnx_path: Path, device: str) -> bool:
    """Step 4: ONNX export of the recommended variant's best model and the parity checks; True when all pass."""
    log.info("[4/6] exporting the best %s model to ONNX and checking parity with torch", RECOMMENDED.name)
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
