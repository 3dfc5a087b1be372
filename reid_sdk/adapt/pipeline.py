"""Adapt to a site without labels: its camera videos and tracks in, a model that matches across its cameras out.

Six steps into one run folder, each skipped when its output is complete, so running the same command again
resumes an interrupted run (training from its last finished stage):

0. ``tracks/``: only for cameras with a video and no tracks file: people detected and tracked
   (:mod:`reid_sdk.adapt.detected_tracks`), the site folder left untouched;
1. ``tracklets/``: every camera's tracks as tracklets through the frame-quality rule (bad or missing videos
   are skipped and counted; a site with tracks from one camera only stops here: nothing in it teaches
   matching across cameras);
2. ``start.pt`` and ``before/``: the start (the ImageNet start, or the user's ``train.init_checkpoint``), and
   what it makes of the site (gallery, matches, pictures, summary);
3. ``train/``: Algorithm 1 on the tracklets from that start (a ``reid-train`` run directory; camera-aware by
   default, see :mod:`reid_sdk.adapt.settings`), two tracks one camera saw at overlapping times never merged
   (cannot-link), the stage chosen without labels;
4. ``model.onnx`` and ``parity.json``: the chosen model exported, its features checked against torch's (with
   ``int8`` set, also ``model_int8.onnx``: :mod:`reid_sdk.adapt.int8_export`);
5. ``after/``: the adapted model's gallery, matches, pictures and summary;
6. ``report.json``: before and after side by side.

Everything is checked before step 1 writes anything (the overrides, the device, the start, ``--out``), so a
refused start leaves nothing behind. ``adapt.json`` records the site and the settings; a run folder refuses to
continue with other ones (unless nothing past step 1 ran: a start stopped there accepts corrected settings).
``steps.json`` records what each step read of the site (:mod:`reid_sdk.adapt.step_inputs`): when the site
changed, the steps that read it run again, with the steps after them. A finished run's re-run writes nothing
(it prints its summary from a read-only copy too). ``seconds.json`` keeps what each step has cost, summed over
the calls that finished it.
"""

from __future__ import annotations

import json
import logging
import time
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch

from reid_sdk._utils.atomic_file import atomic_write
from reid_sdk.adapt.detected_tracks import track_untracked_cameras
from reid_sdk.adapt.int8_export import export_site_int8
from reid_sdk.adapt.matching import SiteMatching, match_site, read_matching
from reid_sdk.adapt.settings import AdaptSettings
from reid_sdk.adapt.step_inputs import StepLedger, file_stamp, site_inputs
from reid_sdk.datasets.files import read_image
from reid_sdk.datasets.site_videos import require_two_cameras, site_splits
from reid_sdk.export.api import export_model
from reid_sdk.export.verify import Tolerance, verify_parity
from reid_sdk.model import ReIDNet, load_checkpoint, save_checkpoint
from reid_sdk.model.device import resolve_device
from reid_sdk.tracks.site import SiteLayout, find_site
from reid_sdk.tracks.site_tracklets import SITE_FILE, SiteTracklets, is_prepared, prepare_site, read_site_tracklets
from reid_sdk.training.config import RunConfig
from reid_sdk.training.memory_budget import plan_run_step
from reid_sdk.training.model_choice import scores_line
from reid_sdk.training.run_dir import RunDirectory
from reid_sdk.training.schedules import build_trainer

log = logging.getLogger(__name__)

FORMAT = "reid-sdk-adapt"
STEPS = 6
#: The steps that write something besides the report, in order (the names of ``steps.json`` and ``seconds.json``).
STEP_NAMES = ("tracklets", "before", "train", "export", "after")
T = TypeVar("T")


class ParityFailed(RuntimeError):
    """The exported ONNX model's features differ from the checkpoint's beyond the tolerance."""


class AdaptPaths:
    """Where each step of a run writes (see the module docstring)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.record = self.root / "adapt.json"
        self.tracklets = self.root / "tracklets"
        self.start = self.root / "start.pt"
        self.before = self.root / "before"
        self.train = self.root / "train"
        self.training_summary = self.train / "summary.json"
        self.model = self.root / "model.onnx"
        self.model_int8 = self.root / "model_int8.onnx"  # --int8 only
        self.parity = self.root / "parity.json"
        self.after = self.root / "after"
        self.report = self.root / "report.json"
        self.seconds = self.root / "seconds.json"
        self.steps = self.root / "steps.json"

    def outputs(self, step: str) -> list[Path]:
        """What ``step`` writes, removed when it runs again (the tracklets' per-camera cache stays: it checks
        each camera's files itself)."""
        return {"tracklets": [self.tracklets / SITE_FILE], "before": [self.before], "train": [self.train],
                "export": [self.model, self.model_int8, self.parity], "after": [self.after]}[step]


@dataclass
class AdaptResult:
    """What a run made: the tracklets, the start's and the adapted model's matching, the training and the export."""

    paths: AdaptPaths
    start: str
    tracklets: SiteTracklets
    before: SiteMatching
    after: SiteMatching
    training: dict[str, Any]
    parity: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """What the command prints at the end."""
        best, step = self.training["best_stage"], self.training.get("step", "stage")
        return [f"site: {self.tracklets.summary()}",
                f"before ({self.start}): {self.before.line()}",
                f"after (adapted, {step} {best} of {self.training['stages']}, chosen by "
                f"{self.training['selected_by']}): {self.after.line()}",
                *([self.training["scores_line"]] if "scores_line" in self.training else []),
                f"model: {self.paths.model} (ONNX parity with torch: "
                f"{'passed' if self.parity['passed'] else 'FAILED'})",
                *([f"INT8 model: {self.paths.model_int8 if self.parity['int8']['passed'] else 'not written'} "
                   f"({self.parity['int8']['calibration']}: {'passed' if self.parity['int8']['passed'] else 'FAILED'})"]
                  if "int8" in self.parity else []),
                f"gallery: {self.paths.after / 'gallery'}; matches: {self.paths.after / 'matches.csv'}; pictures: "
                f"{self.paths.after}/matches_<camera>.png (before: {self.paths.before}); report: {self.paths.report}"]

    def to_dict(self) -> dict[str, Any]:
        return {"site": str(self.tracklets.site), "tracklets": {camera.name: camera.line()
                                                                for camera in self.tracklets.cameras},
                "start": self.start, "before": self.before.to_dict(), "after": self.after.to_dict(),
                "training": self.training, "parity": self.parity, "seconds": self.seconds}


def adapt_site(site: str | Path, out: str | Path, settings: AdaptSettings = AdaptSettings(),
               progress: bool = True) -> AdaptResult:
    """Run (or resume) the six steps of the module docstring for the site at ``site`` into ``out``.

    Raises ValueError for a site it cannot adapt (no usable camera, one camera only), settings it cannot run (bad
    overrides, a device this machine lacks, a start checkpoint of another model) or a run folder holding another
    run, all before anything is written; :class:`ParityFailed` when the exported model does not reproduce the
    checkpoint.
    """
    paths = AdaptPaths(Path(out))
    layout = find_site(site, settings.mot_format(), untracked=True)  # untracked cameras: tracked after the claim
    require_two_cameras([camera.name for camera in layout.cameras], layout.root)  # before any work
    config = settings.run_config(paths.tracklets, paths.start)
    resolve_device(config.train.device)
    start_network = _start_network(config, paths)
    plan_run_step(config, video=True, device=resolve_device(config.train.device))  # a memory budget too small: refused
    _claim(paths, layout.root, settings)
    layout = track_untracked_cameras(layout, paths.root, progress)
    steps = _Steps(paths, _step_inputs(layout, settings, config, paths))

    log.info("[1/%d] tracklets of %d camera(s) into %s", STEPS, len(layout.cameras), paths.tracklets)
    tracklets = steps.run("tracklets", read_site_tracklets(paths.tracklets) if is_prepared(paths.tracklets) else None,
                          lambda: prepare_site(layout, paths.tracklets, settings.tracklet_options(), progress=progress))
    site_splits(tracklets)  # refuses a site with tracks from fewer than two cameras, before any training

    start = Path(config.train.init_checkpoint)
    log.info("[2/%d] the start (%s, %s) on the site: %s", STEPS, _start_label(config, paths), config.model.backbone,
             paths.before)

    def measure_start() -> SiteMatching:
        if start_network is not None:
            save_checkpoint(start_network, paths.start,
                            metadata={"note": "the start of site adaptation, before training"})
        return _match(start, layout, paths.before, settings, settings.device, progress)

    before = steps.run("before", read_matching(paths.before), measure_start)
    log.info("before: %s", before.line())

    log.info("[3/%d] training on the tracklets (reid-train run in %s)", STEPS, paths.train)
    training = steps.run("train", json.loads(paths.training_summary.read_text())
                         if paths.training_summary.is_file() else None, lambda: _train(config, paths))

    log.info("[4/%d] exporting stage %d to %s and checking parity", STEPS, training["best_stage"], paths.model)
    parity = steps.run("export", _passed_parity(paths, settings), lambda: _export(paths, tracklets, settings))

    log.info("[5/%d] the adapted model on the site: %s", STEPS, paths.after)
    after = steps.run("after", read_matching(paths.after),
                      lambda: _match(paths.model, layout, paths.after, settings, _onnx_device(settings.device),
                                     progress))
    log.info("after: %s", after.line())

    result = AdaptResult(paths, _start_label(config, paths), tracklets, before, after, training, parity,
                         dict(steps.clock.seconds))
    if steps.ran or not paths.report.is_file():  # a finished run's re-run writes nothing
        log.info("[6/%d] report: %s", STEPS, paths.report)
        with atomic_write(paths.report) as handle:
            handle.write(json.dumps(result.to_dict(), indent=1).encode())
    return result


# ----------------------------------------------------------------------------------------------- the steps


class _Steps:
    """Runs each step unless its output is complete: records the step's inputs first, times it after."""

    def __init__(self, paths: AdaptPaths, inputs: dict[str, dict[str, Any]]) -> None:
        self.inputs = inputs
        self.ledger = StepLedger(paths.steps)
        self.clock = StepClock(paths.seconds)
        self.ran = False
        stale, change = self.ledger.stale(STEP_NAMES, inputs)
        written = [path for step in stale for path in paths.outputs(step) if path.exists()]
        if change or written:
            log.warning("%s since step %s ran: running steps %s again", change or "no record of what the steps read "
                        "(a run folder from an earlier reid-sdk)", stale[0], ", ".join(stale))
            for path in [*written, paths.report]:
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
            self.clock.forget(stale)

    def run(self, step: str, finished: T | None, work: Callable[[], T]) -> T:
        """``finished`` (the step's complete output) when there is one, else what ``work`` makes."""
        if finished is not None:
            self.clock.skip()
            return finished
        self.ledger.record(step, self.inputs[step])
        made = work()
        self.clock.lap(step)
        self.ran = True
        return made


def _step_inputs(layout: SiteLayout, settings: AdaptSettings, config: RunConfig,
                 paths: AdaptPaths) -> dict[str, dict[str, Any]]:
    """What each step reads from outside the run folder: the site; step 1 the settings too (a start stopped after
    it may take other ones), the later steps the user's start checkpoint."""
    site = site_inputs(layout)
    start = None if config.train.init_checkpoint == str(paths.start) else file_stamp(Path(config.train.init_checkpoint))
    return {step: {"site": site, "settings": settings.to_dict()} if step == "tracklets"
            else {"site": site, "start": start} for step in STEP_NAMES}


def _start_label(config: RunConfig, paths: AdaptPaths) -> str:
    """What training starts from, as the summary names it."""
    if config.train.init_checkpoint != str(paths.start):
        return f"checkpoint {config.train.init_checkpoint}"
    pretrained = config.model.pretrained
    if pretrained is None:
        return "random start, model.pretrained=null"
    return "ImageNet start" if pretrained == "imagenet" else f"start from {pretrained}"


def _start_network(config: RunConfig, paths: AdaptPaths) -> ReIDNet | None:
    """The network to save as ``start.pt`` (None when it is saved already, or the user's checkpoint is the start,
    checked here to fit the model config): built before anything is written, so missing weights stop nothing."""
    if config.train.init_checkpoint != str(paths.start):
        load_checkpoint(config.train.init_checkpoint, expected_config=config.model)
        return None
    if paths.start.is_file():
        return None
    torch.manual_seed(config.train.seed)
    return ReIDNet(config.model)


def _claim(paths: AdaptPaths, site: Path, settings: AdaptSettings) -> None:
    """Record the site and settings in ``adapt.json``; refuse a folder holding another run or other files.

    A folder where nothing past step 1 started takes the new settings: the tracklets check their options
    themselves, and a start stopped there (a site with one usable camera) is corrected by a new command."""
    record = {"format": FORMAT, "site": str(site.resolve()), "settings": settings.to_dict()}
    if paths.record.is_file():
        try:
            earlier = json.loads(paths.record.read_text())
        except ValueError as error:
            raise ValueError(f"{paths.record} is damaged ({error}); delete the run folder to start again") from error
        if earlier == record:
            return
        if paths.start.exists() or any(path.exists() for step in STEP_NAMES[1:] for path in paths.outputs(step)):
            changed = [key for key in ("site", "settings") if earlier.get(key) != record[key]]
            raise ValueError(f"{paths.root} holds another adaptation (its {' and '.join(changed)} differ, see "
                             f"{paths.record}): rerun with the same ones to resume, or choose another --out")
    elif paths.root.exists() and not paths.root.is_dir():
        raise ValueError(f"--out {paths.root} is a file: choose a folder (it is created)")
    elif paths.root.exists() and any(paths.root.iterdir()):
        raise ValueError(f"--out {paths.root} is not empty and holds no reid-adapt run: choose another folder")
    paths.root.mkdir(parents=True, exist_ok=True)
    with atomic_write(paths.record) as handle:
        handle.write(json.dumps(record, indent=1).encode())


class StepClock:
    """Seconds per step, summed over the calls that finished it and kept in a file after each step, so a resumed
    run reports what its steps cost (not the instant the last call spent skipping them); an interrupted call's
    time on its unfinished step is not counted."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seconds: dict[str, float] = {}
        if path.is_file():
            try:
                self.seconds = {str(step): float(value) for step, value in json.loads(path.read_text()).items()}
            except (ValueError, TypeError, AttributeError) as error:  # not JSON, not a mapping, not numbers
                log.warning("%s is damaged (%s): step times start again from this call", path, error)
        self._clock = time.perf_counter()

    def lap(self, step: str) -> None:
        """Add the time since the last lap (or the start of this call) to ``step`` and save."""
        now = time.perf_counter()
        self.seconds[step] = round(self.seconds.get(step, 0.0) + now - self._clock, 1)
        self._clock = now
        with atomic_write(self.path) as handle:
            handle.write(json.dumps(self.seconds, indent=1).encode())

    def skip(self) -> None:
        """A step that was finished already: its time is not counted, nothing is saved."""
        self._clock = time.perf_counter()

    def forget(self, steps: list[str]) -> None:
        """Steps that run again: their earlier time was spent on inputs that are gone (saved with the next lap)."""
        for step in steps:
            self.seconds.pop(step, None)


def _match(model: Path, layout: Any, folder: Path, settings: AdaptSettings, device: str,
           progress: bool) -> SiteMatching:
    return match_site(model, layout, folder, k=settings.top_k, threshold=settings.threshold,
                      picture_tracks=settings.picture_tracks, device=device, quality=settings.quality,
                      progress=progress, camera_standardise=settings.camera_standardise)


def _train(config: RunConfig, paths: AdaptPaths) -> dict[str, Any]:
    """Train (or resume training from its last stage); returns its summary (``train/summary.json``)."""
    start = time.perf_counter()
    trainer = build_trainer(config, paths.train, resume=bool(RunDirectory(paths.train).completed_stages()))
    results = trainer.run()
    best = next(result for result in results if result.best)
    metric = trainer.model_choice.metric
    summary = {"stages": len(results), "step": trainer.STEP, "best_stage": best.stage, "selected_by": metric,
               "scores_line": scores_line(results, metric, trainer.STEP),
               "score": best.score(metric), "cannot_link": trainer.cannot_link,
               "seconds": round(time.perf_counter() - start, 1), "best": best.as_dict()}
    with atomic_write(paths.training_summary) as handle:
        handle.write(json.dumps(summary, indent=1).encode())
    return summary


def _onnx_device(device: str) -> str:
    """ONNX Runtime on the GPU when training ran there (its CUDA provider when installed), else on the CPU."""
    return "auto" if resolve_device(device).type == "cuda" else "cpu"


def _passed_parity(paths: AdaptPaths, settings: AdaptSettings) -> dict[str, Any] | None:
    """The export's parity record when the step finished and passed, else None (it runs again)."""
    if paths.parity.is_file() and paths.model.is_file():
        parity = json.loads(paths.parity.read_text())
        if parity.get("passed") and (not settings.int8 or "int8" in parity):
            return parity
    return None


def _export(paths: AdaptPaths, tracklets: SiteTracklets, settings: AdaptSettings) -> dict[str, Any]:
    """``model.onnx`` from the chosen stage, and its parity with torch on the site's own crops."""
    checkpoint = paths.train / "best.pt"
    exported = export_model(checkpoint, "onnx", paths.model)
    tracks = tracklets.tracks
    step = max(1, len(tracks) // settings.parity_crops)
    crops = [image for track in tracks[::step][: settings.parity_crops]
             if (image := read_image(track.frames[0])) is not None]
    checks = verify_parity(exported.path, checkpoint, crops, device=_onnx_device(settings.device))
    tolerance = Tolerance.for_precision(exported.precision)
    parity = {"passed": all(check.passes(tolerance) for check in checks),
              "checks": [check.describe() for check in checks], "tolerance": vars(tolerance)}
    if parity["passed"] and settings.int8:
        log.info("INT8: %s calibrated on the site's tracklets", paths.model_int8)
        parity["int8"] = export_site_int8(paths.model, paths.model_int8, checkpoint, paths.tracklets, tracks,
                                          settings.parity_crops, device=_onnx_device(settings.device))
    with atomic_write(paths.parity) as handle:
        handle.write(json.dumps(parity, indent=1).encode())
    if not parity["passed"]:
        raise ParityFailed(f"{paths.model} does not reproduce {checkpoint}: {'; '.join(parity['checks'])}")
    return parity
