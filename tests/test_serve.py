"""reid-serve without a browser: access control, search results against the gallery's own, bad input, erasure,
retention, the audit trail, durability of acknowledged writes, read-only workers and the command line."""

from __future__ import annotations

import json
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi")
from fastapi.routing import APIRoute  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from reid_sdk.cli.serve import main as serve_main  # noqa: E402
from reid_sdk.gallery import Gallery  # noqa: E402
from reid_sdk.serve.app import PUBLIC, create_app  # noqa: E402
from reid_sdk.serve.audit import AuditLog  # noqa: E402
from reid_sdk.serve.keys import Caller, remove_key  # noqa: E402
from reid_sdk.serve.service import SearchService  # noqa: E402
from tests.serve_fixtures import START, ColourExtractor, build_served_gallery  # noqa: E402


@pytest.fixture()
def served(tmp_path):
    return build_served_gallery(tmp_path)


@pytest.fixture()
def client(served):
    with TestClient(create_app(served.settings, ColourExtractor())) as test_client:
        yield test_client


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


def track_entries(gallery: Gallery, camera: str, track_id: int) -> list[int]:
    rows = gallery.rows(gallery.ids())
    return sorted(i for i, row in rows.items() if row.camera == camera and row.track_id == track_id)


def test_every_route_denies_without_a_valid_key_and_admin_routes_need_admin(client, served):
    routes = [route for route in client.app.routes if isinstance(route, APIRoute) and route.path not in PUBLIC]
    assert len(routes) >= 12
    for route in routes:
        path = route.path.replace("{camera}", "c1").replace("{name}", "c1:1").replace("{entry_id}", "0")
        method = sorted(route.methods)[0]
        for headers in ({}, auth("alice.wrong"), auth("nobody.x"), {"X-API-Key": served.search_key + "x"}):
            assert client.request(method, path, headers=headers).status_code == 401, (method, path, headers)
        if route.tags == ["admin"]:
            assert client.request(method, path, headers=auth(served.search_key)).status_code == 403, path
    assert client.get("/healthz").status_code == 200 and client.get("/readyz").json()["entries"] == 24
    assert client.get("/api/whoami", headers={"X-API-Key": served.search_key}).json() == {"name": "alice",
                                                                                         "role": "search"}


def test_keys_are_stored_hashed_and_revocation_needs_no_restart(client, served):
    stored = served.settings.keys_file.read_text()
    assert served.search_key.split(".")[1] not in stored and served.admin_key.split(".")[1] not in stored
    assert client.get("/api/cameras", headers=auth(served.search_key)).status_code == 200
    remove_key(served.settings.keys_file, "alice")
    assert client.get("/api/cameras", headers=auth(served.search_key)).status_code == 401


def test_track_search_matches_the_gallery_and_honours_filters(client, served):
    gallery = Gallery.open(served.settings.gallery)
    own = track_entries(gallery, "c1", 2)
    feature = gallery.vectors(own).mean(axis=0)
    expected = gallery.search(feature / np.linalg.norm(feature), k=5 + len(own), exclude_camera="c1",
                              query_camera="c1")
    answer = client.get("/api/search/track/c1:2", params={"k": 5}, headers=auth(served.search_key)).json()
    assert [m["entry_id"] for m in answer["matches"]] == [m.entry_id for m in expected if m.entry_id not in own][:5]
    assert [m["score"] for m in answer["matches"]] == pytest.approx([m.score for m in expected][:5], abs=1e-6)
    assert answer["matches"][0]["thumbnail"] == f"/api/entries/{answer['matches'][0]['entry_id']}/thumbnail"

    since, until = START + 600 + 60, START + 1200 + 120  # from c2's second track to c3's third
    params = {"k": 20, "cameras": ["c1", "c2"], "exclude_own_camera": False, "since": since, "until": until}
    filtered = client.get("/api/search/track/c1:2", params=params, headers=auth(served.search_key)).json()["matches"]
    assert filtered and all(m["camera"] in ("c1", "c2") and since <= m["timestamp"] <= until for m in filtered)
    assert not set(own) & {m["entry_id"] for m in filtered}
    assert client.get("/api/search/entry/5", params={"rerank": True, "k": 3},
                      headers=auth(served.search_key)).status_code == 200
    gallery.close()


def test_the_service_over_milvus_lite(tmp_path):
    pytest.importorskip("milvus_lite")
    served = build_served_gallery(tmp_path, location=f"milvus-lite:{tmp_path / 'gallery.db'}")
    gallery = Gallery.open(served.settings.gallery)  # Milvus Lite serves its file to one process: expected first
    own = track_entries(gallery, "c2", 1)
    feature = gallery.vectors(own).mean(axis=0)
    expected = [m.entry_id for m in gallery.search(feature / np.linalg.norm(feature), k=6, exclude_camera="c2",
                                                   query_camera="c2") if m.entry_id not in own][:4]
    gallery.close()
    with TestClient(create_app(served.settings, ColourExtractor())) as client:
        key = auth(served.admin_key)
        answer = client.get("/api/search/track/c2:1", params={"k": 4}, headers=key).json()
        assert [m["entry_id"] for m in answer["matches"]] == expected
        assert client.post("/api/erase", json={"track": "c2:1"}, headers=key).json() == {"removed": len(own)}
        assert client.get("/api/search/track/c2:1", headers=key).status_code == 404
        assert client.get("/readyz").json()["entries"] == 24 - len(own)


def test_crop_search_is_the_models_feature_search(client, served):
    crop = cv2.imread(str(served.media / "c2_1_0.png"))
    gallery = Gallery.open(served.settings.gallery)
    expected = gallery.search(ColourExtractor().extract([crop])[0], k=4)
    answer = client.post("/api/search/crop", params={"k": 4}, files={"image": ("q.png", png(crop), "image/png")},
                         headers=auth(served.search_key)).json()
    assert [m["entry_id"] for m in answer["matches"]] == [m.entry_id for m in expected]
    assert answer["query"]["by"] == "crop" and len(answer["query"]["sha256"]) == 64
    gallery.close()


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` (an image bomb's few bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(1000)))
            + chunk(b"IEND", b""))


def test_bad_input_gets_a_clear_4xx(client, served, tmp_path):
    key = auth(served.search_key)

    def upload(data: bytes, name: str = "q.png"):
        return client.post("/api/search/crop", files={"image": (name, data, "image/png")}, headers=key)

    for width, height in ((100_000, 100_000), (5000, 4000)):  # beyond Pillow's own bomb limit, and beyond ours only
        bomb = upload(_png_header(width, height))
        assert bomb.status_code == 413 and "pixels" in bomb.json()["detail"], bomb.json()
    assert upload(b"x" * (served.settings.limits.max_bytes + 1)).status_code == 413
    not_image = upload(b"#!/bin/sh\necho hello\n", "q.sh")
    assert not_image.status_code == 415 and "not an image" in not_image.json()["detail"]
    assert upload(b"").status_code == 415
    assert client.post("/api/search/crop", content=b"x" * 10, headers={**key, "Content-Length": "999999999999"}
                       ).status_code == 413
    assert client.get("/api/search/track/c1:1", params={"k": 0}, headers=key).status_code == 422
    assert client.get("/api/search/track/c1:1", params={"k": 101}, headers=key).status_code == 422
    unknown = client.get("/api/search/track/c1:1", params={"cameras": ["c9"]}, headers=key)
    assert unknown.status_code == 422 and "unknown camera 'c9'" in unknown.json()["detail"]
    assert client.get("/api/search/track/c9:1", headers=key).status_code == 422
    assert client.get("/api/search/track/c1:99", headers=key).status_code == 404
    assert client.get("/api/search/track/nocolon", headers=key).status_code == 422
    assert client.get("/api/search/entry/99999", headers=key).status_code == 404
    admin = auth(served.admin_key)
    malformed = client.post("/api/erase", content=b"{not json", headers={**admin, "Content-Type": "application/json"})
    assert malformed.status_code == 422
    assert client.post("/api/erase", json={}, headers=admin).status_code == 422
    outside = client.post("/api/videos", json={"video": "/etc/passwd", "tracks": "/etc/hosts", "camera": "c1"},
                          headers=admin)
    assert outside.status_code == 422 and "media roots" in outside.json()["detail"]
    for trick in ("..%2F..%2Fetc%2Fpasswd", "../../etc/passwd", "%2Fetc%2Fpasswd", "0%00"):
        assert client.get(f"/api/entries/{trick}/thumbnail", headers=key).status_code in (404, 422), trick


def test_thumbnails_come_only_from_the_media_roots(served, tmp_path):
    secret = tmp_path / "secret.png"
    cv2.imwrite(str(secret), np.full((20, 10, 3), 255, np.uint8))
    (served.media / "link.png").symlink_to(secret)
    gallery = Gallery.open(served.settings.gallery)
    outside, linked = gallery.add(np.eye(2, 32, dtype=np.float32), cameras="c1",
                                  metadata=[{"path": str(secret)}, {"path": str(served.media / "link.png")}])
    gallery.save()
    gallery.close()
    with TestClient(create_app(served.settings, ColourExtractor())) as client:
        key = auth(served.search_key)
        inside = client.get("/api/entries/0/thumbnail", headers=key)
        assert inside.status_code == 200 and cv2.imdecode(np.frombuffer(inside.content, np.uint8), 1) is not None
        assert client.get(f"/api/entries/{outside}/thumbnail", headers=key).status_code == 404
        assert client.get(f"/api/entries/{linked}/thumbnail", headers=key).status_code == 404


def test_erasure_by_track_and_ids_is_durable_and_audited(client, served):
    admin = auth(served.admin_key)
    gallery = Gallery.open(served.settings.gallery)
    track = track_entries(gallery, "c2", 3)
    gallery.close()
    assert client.post("/api/erase", json={"track": "c2:3"}, headers=admin).json() == {"removed": len(track)}
    assert client.post("/api/erase", json={"entry_ids": [0, 99999]}, headers=admin).json() == {"removed": 1}
    assert client.get("/api/search/track/c2:3", headers=admin).status_code == 404
    reopened = Gallery.open(served.settings.gallery)
    assert not set(track + [0]) & set(reopened.ids().tolist()) and len(reopened) == 24 - len(track) - 1
    reopened.close()
    erasures = client.get("/api/audit", params={"action": "erase"}, headers=admin).json()
    assert [(r["who"], r["track"], r["removed"]) for r in erasures] == [("admin", "c2:3", 2), ("admin", None, 1)]
    assert erasures[0]["requested"] == track
    assert client.get("/api/audit", headers=auth(served.search_key)).status_code == 403


def test_every_search_is_audited_without_the_image(client, served):
    key = auth(served.search_key)
    client.get("/api/search/track/c1:1", params={"k": 3, "cameras": ["c2"]}, headers=key)
    crop = cv2.imread(str(served.media / "c1_0_0.png"))
    client.post("/api/search/crop", params={"k": 2}, files={"image": ("q.png", png(crop), "image/png")}, headers=key)
    records = [json.loads(line) for line in served.settings.audit_file.read_text().splitlines()]
    assert [(r["who"], r["action"], r["query"]["by"], r["results"]) for r in records] == [
        ("alice", "search", "track", 3), ("alice", "search", "crop", 2)]
    assert records[0]["filters"]["cameras"] == ["c2"] and len(records[0]["entry_ids"]) == 3
    assert len(served.settings.audit_file.read_bytes()) < len(png(crop))  # the upload is not in the trail


def test_audit_rotates_and_reads_across_files(tmp_path):
    audit = AuditLog(tmp_path / "audit.jsonl", max_bytes=400, backups=3)
    for number in range(60):
        audit.record(Caller("alice", "search"), "search", query={"entry": number}, results=1)
    kept = audit.read(limit=1000)
    audit.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2",
                                                          "audit.jsonl.3"]
    numbers = [record["query"]["entry"] for record in kept]
    assert numbers == list(range(60 - len(numbers), 60)) and numbers[-1] == 59


def test_retention_removes_old_entries_at_start_up_and_audits_it(served):
    from dataclasses import replace

    # c1's entries are timed START..START+181 s, c2's START+600..781, c3's START+1200..1381: a cutoff at START+900
    aged = replace(served.settings, max_age_s=time.time() - (START + 900))
    with TestClient(create_app(aged, ColourExtractor())) as client:
        cameras = client.get("/api/cameras", headers=auth(served.admin_key)).json()
        records = client.get("/api/audit", params={"action": "retention"}, headers=auth(served.admin_key)).json()
    assert cameras == [{"camera": "c3", "tracks": 4}]
    assert records[0]["who"] == "reid-serve" and records[0]["removed"] == 16
    reopened = Gallery.open(served.settings.gallery)
    assert {row.camera for row in reopened.rows(reopened.ids()).values()} == {"c3"}
    reopened.close()


def test_retention_refuses_times_into_a_video(served):
    from dataclasses import replace

    gallery = Gallery.open(served.settings.gallery)
    gallery.add(np.eye(1, 32, dtype=np.float32), cameras="c1", timestamps=12.5)
    gallery.save()
    gallery.close()
    with pytest.raises(ValueError, match="retention needs Unix timestamps"):
        SearchService(replace(served.settings, max_age_s=86400.0))


def test_acknowledged_adds_survive_a_restart_and_merge_with_another_writer(served):
    admin = auth(served.admin_key)
    crop = cv2.imread(str(served.media / "c3_2_1.png"))
    with TestClient(create_app(served.settings, ColourExtractor())) as client:
        first = client.post("/api/entries", data={"camera": "c4", "track_id": "1"},
                            files=[("images", ("a.png", png(crop), "image/png"))] * 2, headers=admin).json()
        other = subprocess.run([sys.executable, "-c", f"""
import numpy as np
from reid_sdk.gallery import Gallery
g = Gallery.open({served.settings.gallery!r})
print(g.add(np.ones((3, 32), np.float32), cameras="cli").tolist()); g.save()"""], capture_output=True, text=True,
                               timeout=120)
        assert other.returncode == 0, other.stderr
        second = client.post("/api/entries", data={"camera": "c4", "track_id": "2"},
                             files=[("images", ("b.png", png(crop), "image/png"))], headers=admin).json()
        kept = list(served.settings.crop_dir.iterdir())
    acknowledged = first["entry_ids"] + second["entry_ids"] + json.loads(other.stdout)
    reopened = Gallery.open(served.settings.gallery)
    assert set(acknowledged) <= set(reopened.ids().tolist()) and len(reopened) == 24 + 6
    assert reopened.rows(first["entry_ids"])[first["entry_ids"][0]].camera == "c4"
    reopened.close()
    assert len(kept) == 1  # the same crop is kept once (named by its content)


def test_a_read_only_worker_refuses_writes_and_reloads_what_the_writer_saved(served):
    from dataclasses import replace

    reader = replace(served.settings, read_only=True, crop_dir=None)
    with TestClient(create_app(reader, ColourExtractor())) as worker:
        service = worker.app.state.service
        refused = worker.post("/api/erase", json={"entry_ids": [1]}, headers=auth(served.admin_key))
        assert refused.status_code == 409 and "read-only" in refused.json()["detail"]
        writer = SearchService(served.settings, ColourExtractor())
        added = writer.add_crops([cv2.imread(str(served.media / "c1_0_0.png"))], camera="c9")
        writer.close()
        assert service.refresh() and not service.refresh()
        assert worker.get("/api/cameras/c9/tracks", headers=auth(served.search_key)).json()["tracks"][0][
            "entry_ids"] == added


def test_command_line_keys_erase_and_retention(served, tmp_path, capsys):
    keys = tmp_path / "cli-keys.json"
    assert serve_main(["keys", "add", "bob", "--role", "admin", "--keys", str(keys)]) == 0
    assert capsys.readouterr().out.startswith("bob.")
    assert serve_main(["keys", "add", "bob", "--role", "admin", "--keys", str(keys)]) == 2
    assert "already has a key named 'bob'" in capsys.readouterr().err
    assert serve_main(["keys", "remove", "carol", "--keys", str(keys)]) == 2
    assert serve_main(["keys", "list", "--keys", str(keys)]) == 0 and "bob\tadmin" in capsys.readouterr().out
    audit = str(served.settings.audit_file)
    gallery = served.settings.gallery
    assert serve_main(["erase", "--gallery", gallery, "--track", "c3:4", "--audit", audit]) == 0
    assert "erased 2 entries of track c3:4" in capsys.readouterr().out
    assert serve_main(["erase", "--gallery", gallery, "--track", "c3:4", "--audit", audit]) == 2
    assert capsys.readouterr().err.strip() == "reid-serve: error: camera c3 has no track 4"
    assert serve_main(["retention", "--gallery", gallery, "--max-age-days", "36500", "--audit", audit]) == 0
    assert serve_main(["erase", "--gallery", str(tmp_path / "none"), "--entries", "1", "--audit", audit]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert [r["action"] for r in AuditLog(served.settings.audit_file).read()] == ["erase", "retention"]
    assert serve_main(["--gallery", gallery, "--keys", str(tmp_path / "missing.json")]) == 2
    assert "no key file" in capsys.readouterr().err


def test_reid_serve_runs_a_model_answers_and_shuts_down_gracefully(tmp_path):
    """The console script end to end: an ONNX model, a crop search, an add, SIGTERM; the add survives."""
    import httpx

    from reid_sdk.inference.extractor import FeatureExtractor
    from reid_sdk.inference.model_contract import ModelMetadata
    from reid_sdk.search.index import ReIDIndex
    from reid_sdk.serve.keys import add_key
    from reid_sdk.synthetic.layouts import sample_crops
    from tests.helpers import pooling_onnx

    model = pooling_onnx(tmp_path / "model.onnx", metadata=ModelMetadata((64, 32), 12))
    crops = sample_crops(6, seed=1)
    index = ReIDIndex.create(FeatureExtractor(model), path=tmp_path / "gallery")
    index.add(crops, camera=["c1", "c2"] * 3, track_id=[1, 1, 2, 2, 3, 3], timestamp=START)
    index.save()
    index.gallery.close()
    key = add_key(tmp_path / "keys.json", "ops", "admin")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "reid_sdk.cli.serve", "--gallery", str(tmp_path / "gallery"),
                               "--model", str(model), "--keys", str(tmp_path / "keys.json"), "--audit",
                               str(tmp_path / "audit.jsonl"), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"}) as http:
            for _ in range(3000):  # until it is ready (a bounded wait against a hang, not a timed assertion)
                try:
                    if http.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    assert server.poll() is None, server.stderr.read()
                    time.sleep(0.1)
            found = http.post("/api/search/crop", params={"k": 2, "camera": "c1"},
                              files={"image": ("q.png", png(crops[0]), "image/png")}).json()["matches"]
            added = http.post("/api/entries", data={"camera": "c3"},
                              files=[("images", ("a.png", png(crops[1]), "image/png"))]).json()["entry_ids"]
    finally:
        server.send_signal(signal.SIGTERM)
        _, log = server.communicate(timeout=60)
    assert [m["camera"] for m in found] == ["c2", "c2"]
    assert "Application shutdown complete" in log
    reopened = Gallery.open(tmp_path / "gallery")
    assert added[0] in reopened.ids().tolist()
    reopened.close()
