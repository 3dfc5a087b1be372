"""Gallery save/open: identical results after a round trip, crash safety, bad paths."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from reid_sdk.gallery import Gallery, GalleryConfig
from reid_sdk.synthetic.vectors import clustered_features


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw", "ivfpq"])
def test_round_trip_gives_identical_results(kind, tmp_path):
    x, labels = clustered_features(2100, 32, seed=2)
    gallery = Gallery(32, index=kind, config=GalleryConfig(pq_nbits=5), path=tmp_path / "g")
    gallery.add(x[:2000], identities=[f"p{label}" for label in labels[:2000]], cameras=np.arange(2000) % 4,
                timestamps=np.arange(2000.0), track_ids=np.arange(2000) // 10,
                metadata=[{"frame": i} for i in range(2000)])
    gallery.remove(range(0, 2000, 7))  # hnsw keeps these as tombstones, which must survive the round trip
    gallery.save()
    reopened = Gallery.open(tmp_path / "g")
    queries = x[2000:]
    assert len(reopened) == len(gallery) and reopened.config == gallery.config
    for filters in ({}, {"exclude_camera": 1, "since": 500.0}):
        assert reopened.search(queries, k=10, **filters) == gallery.search(queries, k=10, **filters)
    first_new = gallery.add(x[:1])[0]
    assert reopened.add(x[:1])[0] == first_new  # the id counter is saved too


def test_save_generations_and_search_param_override(tmp_path):
    x, _ = clustered_features(1000, 16)
    gallery = Gallery(16, index="ivf")
    with pytest.raises(ValueError, match="no path"):
        gallery.save()
    gallery.add(x[:500])
    gallery.save(tmp_path)
    gallery.add(x[500:])
    gallery.save()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["g000002.metadata.sqlite", "g000002.vectors.faiss", "manifest.json"]  # old generation removed
    reopened = Gallery.open(tmp_path, nprobe=3)
    assert len(reopened) == 1000 and reopened.config.nprobe == 3


def test_interrupted_save_leaves_previous_state(tmp_path, monkeypatch):
    x, _ = clustered_features(300, 16)
    gallery = Gallery(16, path=tmp_path)
    gallery.add(x[:100])
    gallery.save()
    gallery.add(x[100:])
    real_replace = os.replace

    def crash_at_commit(source, target):
        if Path(target).name == "manifest.json":
            raise OSError("simulated power loss")
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", crash_at_commit)
    with pytest.raises(OSError, match="power loss"):
        gallery.save()
    monkeypatch.setattr(os, "replace", real_replace)
    assert len(Gallery.open(tmp_path)) == 100  # new generation's files exist but were never committed
    gallery.save()
    assert len(Gallery.open(tmp_path)) == 300


_SAVER = """
import sys
import numpy as np
from reid_sdk.gallery import Gallery
from reid_sdk.synthetic.vectors import clustered_features

path, batch = sys.argv[1], int(sys.argv[2])
x, _ = clustered_features(batch * 12, 64, seed=5)
gallery = Gallery.open(path)
for round_ in range(1, 12):
    # round r holds rows 0 .. (r + 1) * batch - 1, each tagged with the round that added it
    gallery.add(x[round_ * batch:(round_ + 1) * batch], metadata={"round": round_})
    print("saving", round_, flush=True)
    gallery.save()
"""


def test_killed_during_save_leaves_a_consistent_gallery(tmp_path):
    batch = 20_000  # ~5 MB of vectors per generation: each save takes long enough to be interrupted
    x, _ = clustered_features(batch * 12, 64, seed=5)
    rng = random.Random(0)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    for attempt in range(3):
        root = tmp_path / f"g{attempt}"
        seeded = Gallery(64)
        seeded.add(x[:batch], metadata={"round": 0})
        seeded.save(root)
        child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(_SAVER), str(root), str(batch)],
                                 stdout=subprocess.PIPE, text=True, env=env)
        for _ in range(rng.randint(1, 3)):
            assert child.stdout.readline().startswith("saving")
        time.sleep(rng.uniform(0.0, 0.15))
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        gallery = Gallery.open(root)
        count = len(gallery)
        assert count % batch == 0, f"attempt {attempt}: {count} entries is not a whole number of rounds"
        np.testing.assert_array_equal(gallery.ids(), np.arange(count))
        sample = np.random.default_rng(attempt).choice(count, 200, replace=False)
        np.testing.assert_allclose(gallery.vectors(sample), x[sample], atol=1e-6)  # vectors match their rows
        best = [matches[0] for matches in gallery.search(x[sample], k=1)]
        assert [m.entry_id for m in best] == sample.tolist()
        assert [m.metadata["round"] for m in best] == (sample // batch).tolist()  # metadata matches the vectors
        gallery.save()  # the next save clears what the killed one left behind
        assert len(list(root.iterdir())) == 3


def test_bad_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Gallery.open(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        Gallery.open(tmp_path / "file")
    with pytest.raises(NotADirectoryError):
        Gallery(4).save(tmp_path / "file")
    with pytest.raises(FileNotFoundError, match="manifest.json is missing"):
        Gallery.open(tmp_path)
    gallery = Gallery(4)
    gallery.add(np.eye(4))
    gallery.save(tmp_path / "g")
    with pytest.raises(FileExistsError, match="Gallery.open"):
        Gallery(4, path=tmp_path / "g")
    manifest = json.loads((tmp_path / "g" / "manifest.json").read_text())
    (tmp_path / "g" / manifest["files"]["vectors.faiss"]).unlink()
    with pytest.raises(FileNotFoundError, match="incomplete"):
        Gallery.open(tmp_path / "g")
    (tmp_path / "g" / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        Gallery.open(tmp_path / "g")
