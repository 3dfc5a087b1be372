"""reid-adapt run again: on a site that changed under its run folder, from the user's own checkpoint, after a
refused start, on a read-only copy; and the one-line refusals of what it cannot honour (issue 36 items 1, 2, 6, 9)."""

from __future__ import annotations

import errno
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from reid_sdk.datasets import DatasetLayoutError, load_dataset
from reid_sdk.tracks.mot import read_mot, write_mot
from test_site_adaptation import TINY_TRAINING, camera_folders, rendered  # noqa: F401 (a fixture)
from tests.helpers import TEST_MEMORY_BUDGET

TINY_OPTIONS = ["--device", "cpu", "--max-frames", "4", "--pictures", "2", "--max-memory", TEST_MEMORY_BUDGET,
                *[item for override in TINY_TRAINING for item in ("--set", override)]]


def drop_first_track(tracks_file: Path) -> int:
    """Re-track a camera as a tracker would that lost one person: its first track is gone. Returns its id."""
    tracks = read_mot(tracks_file)
    dropped = int(tracks.track_ids[0])
    keep = tracks.track_ids != dropped
    write_mot(tracks_file, tracks.frames[keep], tracks.track_ids[keep], tracks.boxes[keep])
    return dropped


def matched_tracks(run: Path, folder: str) -> set[tuple[str, int]]:
    """The (camera, track) pairs a matches.csv lists as queries."""
    rows = (run / folder / "matches.csv").read_text().splitlines()[1:]
    return {(row.split(",")[0], int(row.split(",")[1])) for row in rows}


def interrupt_training_at(monkeypatch, at_stage: int, seen: list | None = None) -> None:
    """Ctrl-C when training reaches ``at_stage`` (the trainer's model is kept in ``seen``)."""
    from reid_sdk.training.trainer import Trainer

    run_stage = Trainer._run_stage

    def interrupted(self, stage, *args):
        if seen is not None:
            seen.append(self.model)
        if stage == at_stage:
            raise KeyboardInterrupt
        return run_stage(self, stage, *args)

    monkeypatch.setattr(Trainer, "_run_stage", interrupted)


def files_of(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
            for path in sorted(folder.rglob("*"))}


def test_a_site_changed_under_a_run_redoes_the_steps_that_read_it(rendered, tmp_path, monkeypatch, caplog, capsys):
    from reid_sdk.adapt.pipeline import adapt_site
    from reid_sdk.adapt.settings import AdaptSettings
    from reid_sdk.cli.adapt import main
    from reid_sdk.tracks.site_tracklets import read_site_tracklets

    site, out = camera_folders(rendered, tmp_path / "site"), tmp_path / "run"
    settings = AdaptSettings(overrides=TINY_TRAINING, device="cpu", max_frames=4, picture_tracks=2,
                             max_memory=TEST_MEMORY_BUDGET)
    interrupt_training_at(monkeypatch, 1)  # killed mid-training: stage 0 is on disk
    with pytest.raises(KeyboardInterrupt):
        adapt_site(site, out, settings, progress=False)
    monkeypatch.undo()

    gone_c2 = drop_first_track(site / "c2" / "c2.txt")  # re-tracked while the run was stopped
    with caplog.at_level(logging.INFO):
        adapt_site(site, out, settings, progress=False)
    assert "camera c2: tracks file changed since step tracklets ran: running steps tracklets, before, train" in \
        caplog.text
    assert "resuming" not in caplog.text and "--resume" not in caplog.text  # trained again from the start
    assert "data_fingerprint" not in caplog.text
    for folder in ("before", "after"):
        assert ("c2", gone_c2) not in matched_tracks(out, folder) and ("c2", gone_c2 + 1) in matched_tracks(out, folder)

    caplog.clear()
    gone_c3 = drop_first_track(site / "c3" / "c3.txt")  # and again once the run finished
    with caplog.at_level(logging.INFO):
        result = adapt_site(site, out, settings, progress=False)
    assert "camera c3: tracks file changed" in caplog.text
    assert [camera.reused for camera in result.tracklets.cameras] == [True, True, False]
    report = json.loads((out / "report.json").read_text())
    assert report["after"]["tracks"] == len(read_site_tracklets(out / "tracklets").tracks) == result.after.tracks
    assert ("c3", gone_c3) not in matched_tracks(out, "after") and ("c3", gone_c3) not in matched_tracks(out, "before")
    assert report["start"] == "random start, model.pretrained=null"

    # the finished run again, from a read-only copy: its summary, and not a byte written
    written = files_of(out)

    def read_only(path):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr("reid_sdk._utils.atomic_file._new_temporary", read_only)
    capsys.readouterr()
    assert main([str(site), "--out", str(out), *TINY_OPTIONS]) == 0
    printed = capsys.readouterr().out
    assert "before (random start, model.pretrained=null):" in printed and "ImageNet" not in printed
    assert files_of(out) == written
    (out / "after" / "summary.json").unlink()  # an unfinished one: one line saying what to do
    assert main([str(site), "--out", str(out), *TINY_OPTIONS]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]  # after the log lines of the steps it skipped
    assert error.startswith(f"reid-adapt: error: cannot write in the run folder {out} (Read-only file system)")
    assert "copy it somewhere writable" in error


def test_adapting_from_the_users_checkpoint_measures_that_checkpoint_first(rendered, tmp_path, monkeypatch, caplog):
    from reid_sdk.adapt.pipeline import adapt_site
    from reid_sdk.adapt.settings import AdaptSettings
    from reid_sdk.model import ReIDNet, save_checkpoint
    from reid_sdk.training.config import load_config

    site, out, mine = camera_folders(rendered, tmp_path / "site", ("c1", "c2")), tmp_path / "run", tmp_path / "my.pt"
    save_checkpoint(ReIDNet(load_config(None, TINY_TRAINING).model), mine)
    settings = AdaptSettings(overrides=(*TINY_TRAINING, f"train.init_checkpoint={mine}"), device="cpu", max_frames=4,
                             picture_tracks=1, max_memory=TEST_MEMORY_BUDGET)
    models: list = []
    interrupt_training_at(monkeypatch, 0, models)
    with caplog.at_level(logging.INFO), pytest.raises(KeyboardInterrupt):
        adapt_site(site, out, settings, progress=False)
    assert json.loads((out / "before" / "summary.json").read_text())["model"] == str(mine)
    assert not (out / "start.pt").exists() and f"the start (checkpoint {mine}" in caplog.text
    assert models[0].weights_source == f"checkpoint {mine}"  # training starts from it too

    mine.write_bytes(b"not a checkpoint any more")  # the start changed: refused before anything runs
    with pytest.raises(ValueError, match="is not a reid-sdk checkpoint"):
        adapt_site(site, out, settings, progress=False)


@pytest.mark.parametrize("override, says", [
    ("data.root=/elsewhere", "--set data.root: reid-adapt trains on the tracklets it prepares"),
    ("data.format=market1501", "--set data.format: reid-adapt reads the site's tracklets as videos"),
    ("train.select_by=map", "--set train.select_by: a site has no labels"),
    ("train.device=cpu", "--set train.device: use --device"),
    ("train.seed=3", "--set train.seed: use --seed"),
])
def test_set_values_reid_adapt_decides_are_refused_in_one_line(rendered, tmp_path, capsys, override, says):
    from reid_sdk.cli.adapt import main

    assert main([str(rendered), "--out", str(tmp_path / "run"), *TINY_OPTIONS, "--set", override]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"reid-adapt: error: {says}") and error.endswith("; drop it")
    assert len(error.splitlines()) == 1 and not (tmp_path / "run").exists()


@pytest.mark.parametrize("option, says", [
    (["--set", "train.batch_size=1"], "train.batch_size must be >= 2"),
    (["--set", "train.no_such_key=1"], "unknown config key train.no_such_key"),
    (["--device", "cuda:99"], "device 'cuda:99' requested but"),
    (["--set", "train.init_checkpoint=missing.pt"], "checkpoint not found"),
    (["--set", "model.input_size=[128, 64]", "--set", "train.init_checkpoint=MINE"], "another model config"),
])
def test_everything_is_checked_before_step_1_writes_anything(rendered, tmp_path, capsys, option, says):
    from reid_sdk.cli.adapt import main
    from reid_sdk.model import ReIDNet, save_checkpoint
    from reid_sdk.training.config import load_config

    mine = tmp_path / "mine.pt"
    save_checkpoint(ReIDNet(load_config(None, TINY_TRAINING).model), mine)
    out = tmp_path / "run"
    argv = [str(rendered), "--out", str(out), *TINY_OPTIONS, *[item.replace("MINE", str(mine)) for item in option]]
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert says in error and len(error.splitlines()) == 1
    assert not out.exists()  # the corrected command finds an empty place


def test_a_start_stopped_after_step_1_takes_the_corrected_command(rendered, tmp_path, monkeypatch, capsys):
    from reid_sdk.adapt import pipeline
    from reid_sdk.cli.adapt import main

    site, out = camera_folders(rendered, tmp_path / "site", ("c1", "c2")), tmp_path / "run"
    tracks = read_mot(site / "c2" / "c2.txt")
    short = np.zeros(len(tracks.frames), bool)  # each track's first two boxes
    for track in np.unique(tracks.track_ids):
        rows = np.flatnonzero(tracks.track_ids == track)
        short[rows[np.argsort(tracks.frames[rows])[:2]]] = True
    write_mot(site / "c2" / "c2.txt", tracks.frames[short], tracks.track_ids[short], tracks.boxes[short])
    assert main([str(site), "--out", str(out), *TINY_OPTIONS]) == 2  # c2's tracks have 2 boxes: one camera left
    assert "tracks from one camera only (c1)" in capsys.readouterr().err and (out / "adapt.json").is_file()

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "_match", stop)  # far enough: the folder took the new settings
    assert main([str(site), "--out", str(out), *TINY_OPTIONS, "--min-boxes", "2"]) == 130
    assert "holds another adaptation" not in capsys.readouterr().err
    assert json.loads((out / "adapt.json").read_text())["settings"]["min_boxes"] == 2


def test_out_that_is_a_file_is_named_a_file(rendered, tmp_path, capsys):
    from reid_sdk.cli.adapt import main

    (tmp_path / "run").write_bytes(b"")
    assert main([str(rendered), "--out", str(tmp_path / "run"), *TINY_OPTIONS]) == 2
    assert capsys.readouterr().err.strip() == f"reid-adapt: error: --out {tmp_path / 'run'} is a file: choose a " \
                                              f"folder (it is created)"


def test_reid_train_on_a_read_only_site_says_prepare_them_elsewhere(rendered, tmp_path, monkeypatch, capsys):
    from reid_sdk.cli.train import main

    site = camera_folders(rendered, tmp_path / "site", ("c1", "c2"))
    mkdir = Path.mkdir

    def read_only_site(self, *args, **kwargs):
        if self.is_relative_to(site):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only_site)
    assert main(["--data", str(site), "--format", "videos", "--out", str(tmp_path / "train")]) == 2
    error = capsys.readouterr().err.strip()
    assert "Read-only file system" in error and "prepare them elsewhere" in error and len(error.splitlines()) == 1


def test_a_market_folder_without_query_is_reported_missing_query(tmp_path):
    for folder in ("bounding_box_train", "bounding_box_test"):
        (tmp_path / "market" / folder).mkdir(parents=True)
    with pytest.raises(DatasetLayoutError, match=r"market does not hold the expected layout \(missing query\)"):
        load_dataset(tmp_path / "market", "market1501")


def test_the_ledger_names_each_kind_of_change_and_reads_a_damaged_file_as_no_record(tmp_path, caplog):
    from reid_sdk.adapt.step_inputs import StepLedger, describe_changes

    def site(**cameras):
        return {"cameras": {name: {"video": [f"/{name}.avi", 10, 1], "tracks": "a", "identities": None, **change}
                            for name, change in cameras.items()}, "skipped": {"c4": "no MOT file"}}

    before = {"site": site(c1={}, c2={}, c3={}), "start": None}
    now = {"site": {**site(c1={"video": ["/c1.avi", 11, 2]}, c2={"tracks": "b", "identities": "x"}, c5={}),
                    "skipped": {"c3": "no MOT file c3.txt"}}, "start": ["/my.pt", 5, 9]}
    assert describe_changes(before, now) == ("camera c5 added; camera c1: video changed; camera c2: tracks file "
                                             "changed; camera c2: identities file changed; camera c3 now skipped (no "
                                             "MOT file c3.txt); the start checkpoint changed")
    ledger = StepLedger(tmp_path / "steps.json")
    steps, inputs = ("tracklets", "before"), {"tracklets": {"site": before["site"]}, "before": before}
    assert ledger.stale(steps, inputs) == (["tracklets", "before"], None)  # a fresh folder: no record, nothing said
    for step in steps:
        ledger.record(step, inputs[step])
    assert StepLedger(tmp_path / "steps.json").stale(steps, inputs) == ([], None)  # read back: nothing to redo
    assert ledger.stale(steps, {**inputs, "before": now})[0] == ["before"]  # the start changed: step 2 on
    (tmp_path / "steps.json").write_text("[1, 2]")
    with caplog.at_level(logging.WARNING):
        assert StepLedger(tmp_path / "steps.json").stale(steps, inputs) == (["tracklets", "before"], None)
    assert "steps.json is damaged (not a mapping of steps): every step runs again" in caplog.text
