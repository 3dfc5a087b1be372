"""The synthetic generator: determinism, sizes, configuration errors and the reid-synth command."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from reid_sdk.synthetic.pedestrians import DifficultyConfig
from reid_sdk.cli.synth import main
from reid_sdk.synthetic.layouts import PRESETS, LayoutSizes, SyntheticConfig, generate


def _contents(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_whatever_the_threads(tmp_path):
    config = SyntheticConfig(seed=11, sizes=PRESETS["tiny"])
    generate("mars", tmp_path / "a", config, workers=1)
    generate("mars", tmp_path / "b", config, workers=3)
    generate("mars", tmp_path / "c", dataclasses.replace(config, seed=12), workers=1)
    a, b, c = (_contents(tmp_path / name) for name in "abc")
    assert a == b
    images = [name for name in a if name.endswith(".jpg")]
    assert sum(a[name] != c.get(name) for name in images) > len(images) // 2


def test_images_have_the_configured_size_and_differ_between_identities(tmp_path):
    config = SyntheticConfig(seed=0, image_size=(96, 48), sizes=PRESETS["tiny"])
    generate("crops", tmp_path, config, workers=1)
    paths = sorted(tmp_path.rglob("*.jpg")) + sorted(tmp_path.rglob("*.png"))
    images = [cv2.imread(str(p)) for p in paths]
    assert all(image.shape == (96, 48, 3) for image in images)
    assert len({image.tobytes() for image in images}) == len(images)


def test_bad_configuration_is_rejected():
    with pytest.raises(ValueError, match="cameras_per_id"):
        LayoutSizes(train_ids=2, test_ids=2, num_cameras=3, cameras_per_id=(1, 2))
    with pytest.raises(ValueError, match="cast_strength"):
        DifficultyConfig(cast_strength=1.5)
    with pytest.raises(ValueError, match="image_size"):
        SyntheticConfig(image_size=(8, 4))
    with pytest.raises(ValueError, match="unknown layout"):
        generate("cuhk03", "/tmp/unused", SyntheticConfig(sizes=PRESETS["tiny"]))


def test_too_few_images_for_the_sightings_is_a_clear_error(tmp_path):
    sizes = dataclasses.replace(PRESETS["tiny"], train_images=1)
    with pytest.raises(ValueError, match="cannot spread 1 images"):
        generate("market1501", tmp_path, SyntheticConfig(sizes=sizes))


def test_command_writes_several_layouts(tmp_path, capsys):
    assert main([str(tmp_path), "--layout", "market1501", "--layout", "tracklets", "--size", "tiny",
                 "--image-size", "64x32", "--seed", "4"]) == 0
    assert (tmp_path / "market1501" / "bounding_box_train").is_dir()
    assert (tmp_path / "tracklets" / "labels.csv").is_file()
    assert "market1501:" in capsys.readouterr().out
    assert main([str(tmp_path / "x"), "--size", "tiny", "--train-ids", "0"]) == 2


def test_a_non_empty_folder_is_refused_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "synth"
    assert main([str(out), "--size", "tiny", "--image-size", "64x32"]) == 0
    before = sorted(p.name for p in (out / "bounding_box_train").iterdir())
    assert main([str(out), "--size", "tiny", "--image-size", "64x32", "--seed", "1"]) == 2
    assert "is not empty" in capsys.readouterr().err
    assert sorted(p.name for p in (out / "bounding_box_train").iterdir()) == before  # nothing mixed in
    (out / "stray.txt").write_text("old")
    assert main([str(out), "--size", "tiny", "--image-size", "64x32", "--seed", "1", "--overwrite"]) == 0
    assert not (out / "stray.txt").exists()


def test_identity_palettes_are_shared():
    """Several identities wear the same upper-body palette colour: colour alone cannot identify them."""
    from reid_sdk.synthetic.pedestrians import make_identity

    difficulty = DifficultyConfig()
    uppers = [make_identity(np.random.default_rng([0, pid]), DifficultyConfig(colour_jitter=0.0)).upper
              for pid in range(40)]
    assert len(set(uppers)) <= difficulty.upper_palette
