"""Several processes on one gallery directory: concurrent writers lose nothing, readers never fail, and a
process killed at any point of a save leaves either the old or the new state.

Bounded loops and generous timeouts only; nothing here measures time.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

from reid_sdk.gallery import Gallery

ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
TIMEOUT_S = 600

_WRITER = """
import sys
import numpy as np
from reid_sdk.gallery import Gallery

root, writer, rounds, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
gallery = Gallery.open(root)
for round_ in range(rounds):
    vectors = np.random.default_rng(1000 * writer + round_).standard_normal((batch, 32))
    gallery.add(vectors, identities=f"w{writer}", metadata={"writer": writer, "round": round_})
    gallery.remove([writer * rounds + round_])  # one seed entry per round, different for each writer
    gallery.save()
"""

_READER = """
import sys
import time
from pathlib import Path
from reid_sdk.gallery import Gallery

root, stop = sys.argv[1], Path(sys.argv[2])
opened, deadline = 0, time.monotonic() + 500
while opened == 0 or (not stop.exists() and opened < 100_000 and time.monotonic() < deadline):
    with Gallery.open(root) as gallery:
        assert len(gallery.ids()) == len(gallery)
    opened += 1
print(opened)
"""


def run_script(code: str, *args: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *map(str, args)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen) -> str:
    stdout, stderr = process.communicate(timeout=TIMEOUT_S)
    assert process.returncode == 0, stderr
    return stdout


def test_two_writers_and_a_reader_share_one_gallery(tmp_path):
    rounds, batch = 12, 20
    seed = np.random.default_rng(99).standard_normal((100, 32))
    gallery = Gallery(32)
    gallery.add(seed, identities="seed")
    gallery.save(tmp_path)
    stop = tmp_path.parent / f"{tmp_path.name}.stop"
    reader = run_script(_READER, tmp_path, stop)
    writers = [run_script(_WRITER, tmp_path, writer, rounds, batch) for writer in (0, 1)]
    for writer in writers:
        finish(writer)
    stop.touch()
    assert int(finish(reader)) >= 1  # it opened the gallery again and again while both saved, without one error

    final = Gallery.open(tmp_path)
    assert len(final) == 100 - 2 * rounds + 2 * rounds * batch  # every add of both writers, every removal
    np.testing.assert_array_equal(np.intersect1d(final.ids(), np.arange(100)), np.arange(2 * rounds, 100))
    for writer in (0, 1):
        expected = np.concatenate([np.random.default_rng(1000 * writer + r).standard_normal((batch, 32))
                                   for r in range(rounds)])
        best = [matches[0] for matches in final.search(expected, k=1)]
        assert all(m.score > 0.9999 and m.identity == f"w{writer}" for m in best)
        assert [m.metadata["round"] for m in best] == np.repeat(np.arange(rounds), batch).tolist()
        np.testing.assert_allclose(final.vectors([m.entry_id for m in best]),
                                   expected / np.linalg.norm(expected, axis=1, keepdims=True), atol=1e-6)


_SAVER = """
import itertools
import sys
import time
import numpy as np
from reid_sdk.gallery import Gallery

root, first, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
gallery = Gallery.open(root)
for round_ in itertools.count(first):
    # each round replaces the whole content, so a saved state is exactly one round
    gallery.remove(gallery.ids())
    gallery.add(np.random.default_rng(round_).standard_normal((batch, 64)), metadata={"round": round_})
    print("saving", round_, flush=True)
    start = time.perf_counter()
    gallery.save()
    print("saved", round_, time.perf_counter() - start, flush=True)
"""


def round_vectors(round_: int, batch: int) -> np.ndarray:
    vectors = np.random.default_rng(round_).standard_normal((batch, 64)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_killed_at_random_points_of_saves_leaves_the_old_or_the_new_state(tmp_path):
    batch = 20_000  # ~6 MB per generation: a save takes long enough to be interrupted in its middle
    rng = random.Random(0)
    gallery = Gallery(64)
    gallery.add(round_vectors(0, batch), metadata={"round": 0})
    gallery.save(tmp_path)
    on_disk, save_s = 0, 0.1
    for attempt in range(22):
        child = run_script(_SAVER, tmp_path, on_disk + 1, batch)
        seen: list[str] = []
        saves_to_see = rng.randint(1, 3)
        while sum(line.startswith("saving") for line in seen) < saves_to_see:
            seen.append(child.stdout.readline())
            assert seen[-1], child.stderr.read()
        time.sleep(rng.uniform(0.0, 1.5 * save_s))  # mostly inside the save: its length is learnt as we go
        child.send_signal(signal.SIGKILL)
        output, _ = child.communicate(timeout=TIMEOUT_S)
        lines = [line.split() for line in [*seen, *output.splitlines()]]
        saves = [(int(words[1]), float(words[2])) for words in lines if words[0] == "saved"]
        saved = max([round_ for round_, _ in saves], default=on_disk)
        started = max([int(words[1]) for words in lines if words[0] == "saving"], default=saved)
        save_s = max([seconds for _, seconds in saves], default=save_s)
        reopened = Gallery.open(tmp_path)
        ids = reopened.ids()
        rounds = {m[0].metadata["round"] for m in reopened.search(reopened.vectors(ids[:: batch // 50]), k=1)}
        assert len(rounds) == 1, f"attempt {attempt}: a mix of rounds {rounds}"
        (on_disk,) = rounds
        assert on_disk in (saved, started), f"attempt {attempt}: round {on_disk}, last saved {saved}, started {started}"
        assert len(ids) == batch
        np.testing.assert_allclose(reopened.vectors(ids), round_vectors(on_disk, batch), atol=1e-6)
        reopened.close()
    Gallery.open(tmp_path).save()  # the next save clears what the killed ones left behind
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 5 and names[0] == ".lock" and names[-1] == "manifest.json", names
    assert names[1].split(".")[0] == names[2].split(".")[0]  # the two files of one generation
