"""reid-serve under load on loopback (CPU): search latency p50 / p99 and throughput at 1, 8 and 32 concurrent
clients on a 100k-entry gallery while an ingest adds crops through the API beside them; then the service is killed
(SIGKILL) in the middle of an ingest and restarted, and every acknowledged entry must still be there.

The gallery holds random unit features (no model runs to build it) at the feature size of the service's model, a
random-init ResNet-18 exported to ONNX (512-d, 64 x 32 input): the ingest runs that model on rendered crops. Searches
are by stored entry (``GET /api/search/entry/ID?k=10``, other cameras only), so the model stays out of the search
timings; each is a flat (exact) FAISS search with plain cosine scores (``--no-camera-standardise``): with camera
standardisation on, every add makes the next search rebuild the standardised index of all entries, which this
benchmark times on its own (``standardised_rebuild``). Clients are threads of this process with
one keep-alive HTTP connection each, on the same cores as the server: the numbers are upper bounds under that load.
The kill takes the service's whole process group (Milvus Lite runs its server as a child process): a crash.

    python -m benchmarks.serve_load                          # FAISS + SQLite: benchmarks/results/serve_load.json
    python -m benchmarks.serve_load --backend milvus-lite    # benchmarks/results/serve_load_milvus_lite.json
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np

from benchmarks.common import write_results
from reid_sdk.export.onnx_export import export_onnx
from reid_sdk.gallery import Gallery
from reid_sdk.inference.extractor import FeatureExtractor
from reid_sdk.model import ModelConfig, ReIDNet, save_checkpoint
from reid_sdk.serve.keys import add_key
from reid_sdk.synthetic.layouts import sample_crops

CAMERAS = 8
CROPS_PER_INGEST = 4


def build_gallery(folder: Path, entries: int, backend: str, seed: int = 0) -> tuple[Path, str, np.ndarray]:
    """The model (ONNX), the location of a gallery of ``entries`` random unit features at its size (timed over the
    last 30 days) on ``backend``, and the entries' ids."""
    model = export_onnx(save_checkpoint(ReIDNet(ModelConfig(backbone="resnet18", input_size=(64, 32), pretrained=None,
                                                            embedding_dim=64)).eval(), folder / "model.pt"),
                        folder / "model.onnx")
    extractor = FeatureExtractor(model)
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((entries, extractor.feature_dim), dtype=np.float32)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    location = str(folder / "gallery") if backend == "faiss" else f"milvus-lite:{folder / 'gallery.db'}"
    gallery = Gallery(extractor.feature_dim, path=location, model_id=extractor.model_id)
    ids = gallery.add(features, cameras=[f"c{i % CAMERAS}" for i in range(entries)], track_ids=np.arange(entries) // 4,
                timestamps=time.time() - rng.uniform(0, 30 * 86400, entries))
    gallery.save()
    gallery.close()
    return model, location, ids


class Server:
    """``reid-serve`` in a subprocess on a free loopback port."""

    def __init__(self, folder: Path, model: Path, gallery: str) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.command = [sys.executable, "-m", "reid_sdk.cli.serve", "--gallery", str(gallery), "--model", str(model),
                        "--keys", str(folder / "keys.json"), "--audit", str(folder / "audit" / "audit.jsonl"),
                        "--crop-dir", str(folder / "crops"), "--port", str(self.port),
                        "--no-camera-standardise"]
        self.log = folder / "server.log"  # uvicorn's lines and the access log (a pipe left unread would fill)
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 300.0) -> float:
        """Start it and wait until /readyz answers; the seconds that took."""
        started = time.perf_counter()
        with open(self.log, "a") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=log, start_new_session=True)
        while time.perf_counter() - started < timeout_s:
            if self.process.poll() is not None:
                raise RuntimeError(f"reid-serve exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return time.perf_counter() - started
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError("reid-serve did not become ready")

    def stop(self, how: int) -> int:
        """SIGTERM the service, or SIGKILL its whole process group; its exit code."""
        if how == signal.SIGKILL:
            os.killpg(self.process.pid, how)
        else:
            self.process.send_signal(how)
        return self.process.wait(120)


class Ingest(threading.Thread):
    """Adds ``CROPS_PER_INGEST`` crops per request until stopped or ``limit`` requests; keeps the acknowledged ids."""

    def __init__(self, url: str, key: str, crops: list[bytes], limit: int) -> None:
        super().__init__(daemon=True)
        self.url, self.key, self.crops, self.limit = url, key, crops, limit
        self.stop, self.acknowledged, self.latencies, self.failed, self.cut = threading.Event(), [], [], 0, 0

    def run(self) -> None:
        with httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=120) as client:
            for number in range(self.limit):
                if self.stop.is_set():
                    return
                files = [("images", (f"{i}.png", self.crops[(number + i) % len(self.crops)], "image/png"))
                         for i in range(CROPS_PER_INGEST)]
                started = time.perf_counter()
                try:
                    response = client.post("/api/entries", data={"camera": "ingest", "track_id": str(number)},
                                           files=files)
                except httpx.TransportError:
                    self.cut += 1  # the server was killed with this request in flight: never acknowledged
                    return
                if response.status_code == 200:
                    self.acknowledged += response.json()["entry_ids"]
                    self.latencies.append(time.perf_counter() - started)
                else:
                    self.failed += 1


def load(url: str, key: str, clients: int, requests_each: int, entries: np.ndarray) -> dict[str, Any]:
    """``clients`` threads each sending ``requests_each`` searches by a random entry; latency and throughput."""
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()

    def client(seed: int) -> None:
        rng = np.random.default_rng(seed)
        mine, errors = [], []
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
            for entry in rng.choice(entries, requests_each):
                started = time.perf_counter()
                try:
                    response = http.get(f"/api/search/entry/{entry}", params={"k": 10})
                    if response.status_code != 200 or len(response.json()["matches"]) != 10:
                        errors.append(f"{response.status_code}: {response.text[:100]}")
                except httpx.HTTPError as error:
                    errors.append(repr(error))
                mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)
            failures.extend(errors)

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    milliseconds = 1000 * np.asarray(latencies)
    return {"clients": clients, "requests": len(latencies), "failed": len(failures), "failures": failures[:5],
            "p50_ms": float(np.percentile(milliseconds, 50)), "p99_ms": float(np.percentile(milliseconds, 99)),
            "throughput_per_s": len(latencies) / wall, "wall_s": wall}


def standardised_rebuild(gallery: str, entry: int) -> dict[str, float]:
    """Seconds of the first camera-standardised search of a freshly opened gallery (the index rebuild each add
    costs the next search), of the next one, and of a plain search."""
    opened = Gallery.open(gallery)
    query = opened.vectors([entry])[0]
    seconds = {}
    for name, switch in (("first_standardised_s", True), ("next_standardised_s", True), ("plain_s", False)):
        started = time.perf_counter()
        opened.search(query, k=10, exclude_camera="c0", query_camera="c0", camera_standardise=switch)
        seconds[name] = time.perf_counter() - started
    opened.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=320, help="searches per concurrency level (split among clients)")
    parser.add_argument("--ingest-limit", type=int, default=200, help="the most ingest requests of one phase")
    parser.add_argument("--backend", choices=("faiss", "milvus-lite"), default="faiss")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        # in a process of its own: a Milvus Lite file stays held by the process that opened it until it exits
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            model, gallery, ids = pool.submit(build_gallery, folder, args.entries, args.backend).result()
            build_s = time.perf_counter() - started
            rebuild = pool.submit(standardised_rebuild, gallery, int(ids[0])).result()
        admin = add_key(folder / "keys.json", "bench", "admin")
        crops = [cv2.imencode(".png", crop)[1].tobytes() for crop in sample_crops(8, seed=5, image_size=(128, 64))]
        server = Server(folder, model, gallery)
        ready_s = server.start()
        httpx.get(f"{server.url}/api/search/entry/{ids[0]}", headers={"Authorization": f"Bearer {admin}"}, timeout=300)

        ingest = Ingest(server.url, admin, crops, args.ingest_limit)
        ingest.start()
        levels = [load(server.url, admin, clients, max(1, args.requests // clients), ids)
                  for clients in args.clients]
        ingest.stop.set()
        ingest.join()

        restart = Ingest(server.url, admin, crops, args.ingest_limit)
        restart.start()
        while len(restart.acknowledged) < 3 * CROPS_PER_INGEST and restart.is_alive():
            time.sleep(0.05)
        time.sleep(0.3)  # into the next request: its add or its save is under way
        killed = server.stop(signal.SIGKILL)
        restart.join()
        restart_ready_s = server.start()
        terminate_code = server.stop(signal.SIGTERM)
        graceful = server.log.read_text().count("Application shutdown complete")  # the lifespan closed the gallery
        after = Gallery.open(gallery)  # after the service: Milvus Lite serves its file to one process
        present = set(after.ids().tolist())
        after.close()
        acknowledged = ingest.acknowledged + restart.acknowledged
        lost = sorted(set(acknowledged) - present)

    ingest_ms = 1000 * np.asarray(ingest.latencies or [np.nan])
    results = {
        "gallery": {"entries": args.entries, "backend": args.backend, "index": "flat",
                    "camera_standardise": False, "build_and_save_s": build_s},
        "standardised_rebuild": rebuild,
        "query": "GET /api/search/entry/ID?k=10 (a stored entry's vector: no model in the timing)",
        "service_ready_s": ready_s,
        "levels": levels,
        "ingest_beside": {"requests_acknowledged": len(ingest.latencies), "crops_per_request": CROPS_PER_INGEST,
                          "entries_acknowledged": len(ingest.acknowledged), "failed": ingest.failed,
                          "p50_ms": float(np.median(ingest_ms)), "max_ms": float(np.max(ingest_ms)),
                                  "note": "each acknowledgement follows the gallery's save (FAISS: the whole generation "
                                  "rewritten; Milvus: a flush)"},
        "restart": {"killed_with": "SIGKILL", "exit_code": killed, "acknowledged_before_kill":
                    len(restart.acknowledged), "requests_cut": restart.cut, "ready_after_s": restart_ready_s,
                    "acknowledged_total": len(acknowledged), "lost": len(lost), "lost_ids": lost[:20],
                    "sigterm_exit_code": terminate_code, "sigterm_shutdown_complete": graceful == 1,
                    "note": "uvicorn re-raises SIGTERM after its graceful shutdown, hence exit code -15"},
        "failed_requests": sum(level["failed"] for level in levels) + ingest.failed + restart.failed,
    }
    name = "serve_load" if args.backend == "faiss" else "serve_load_milvus_lite"
    print(write_results(name, results, args.out))
    for level in levels:
        print(f"{level['clients']:>3} clients: p50 {level['p50_ms']:.1f} ms, p99 {level['p99_ms']:.1f} ms, "
              f"{level['throughput_per_s']:.0f} searches/s, {level['failed']} failed")
    print(f"ingest beside: {len(ingest.acknowledged)} entries acknowledged; restart: {len(lost)} of "
          f"{len(acknowledged)} acknowledged entries lost")


if __name__ == "__main__":
    main()
