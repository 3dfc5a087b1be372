"""The reid-serve HTTP application (FastAPI): search, browse, ingest, erase, retention, audit, and the page.

Every route needs an API key (``Authorization: Bearer KEY`` or ``X-API-Key: KEY``) except the liveness and readiness
probes, the OpenAPI schema and the page's static files: the check is one application-wide dependency, so a route
added later is denied by default. Writes, erasure, retention and the audit trail need the ``admin`` role. Each
request is logged as one JSON line on the ``reid_sdk.serve.access`` logger; each search, ingest, erasure and
retention run is recorded in the audit trail.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations, some of them local names.
import hashlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from reid_sdk.gallery import Match
from reid_sdk.serve.audit import SYSTEM, AuditLog
from reid_sdk.serve.keys import Caller, KeyRing
from reid_sdk.serve.service import ReadOnlyError, SearchRequest, SearchService
from reid_sdk.serve.settings import ServeSettings
from reid_sdk.serve.uploads import UploadRefused, decode_crop

access_log = logging.getLogger("reid_sdk.serve.access")
PAGE = Path(__file__).with_name("page")
PUBLIC = ("/healthz", "/readyz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/")
MAX_FILES = 32  # crops in one add request
Label = int | str | None


class MatchOut(BaseModel):
    """One search result."""

    entry_id: int
    score: float
    camera: Label
    track_id: Label
    identity: Label
    timestamp: float | None
    first_time: float | None
    last_time: float | None
    thumbnail: str


class SearchOut(BaseModel):
    query: dict[str, Any]
    matches: list[MatchOut]


class TrackOut(BaseModel):
    name: str | None = Field(description="CAMERA:TRACK_ID, None for an entry without a track")
    camera: Label
    track_id: Label
    entry_ids: list[int]
    first_time: float | None
    last_time: float | None
    thumbnail: str


class EraseIn(BaseModel):
    """What to erase: entry ids, or a track ``CAMERA:TRACK_ID`` (exactly one of the two)."""

    entry_ids: list[int] | None = None
    track: str | None = None


class VideoIn(BaseModel):
    """A video and its MOT tracks file, both under the service's media roots, seen by ``camera``."""

    video: str
    tracks: str
    camera: str
    start_time: float = 0.0


def _thumbnail_url(entry_id: int) -> str:
    return f"/api/entries/{entry_id}/thumbnail"


def _match_out(match: Match) -> MatchOut:
    meta = match.metadata
    times = {name: meta.get(name) if isinstance(meta.get(name), (int, float)) else None
             for name in ("first_time", "last_time")}
    return MatchOut(entry_id=match.entry_id, score=match.score, camera=match.camera, track_id=match.track_id,
                    identity=match.identity, timestamp=match.timestamp, thumbnail=_thumbnail_url(match.entry_id),
                    **times)


def _caller(request: Request) -> Caller:
    """The caller the route dependencies stored on the request."""
    return request.state.caller


def _admin(request: Request) -> Caller:
    caller = _caller(request)
    if not caller.is_admin:
        raise HTTPException(403, f"key {caller.name!r} has the {caller.role} role: this needs an admin key")
    return caller


def _presented_key(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else request.headers.get("x-api-key")


class _Maintenance(threading.Thread):
    """Retention on a schedule (the writer) or reloading the gallery when it changed (a read-only worker)."""

    def __init__(self, service: SearchService, audit: AuditLog) -> None:
        super().__init__(name="reid-serve-maintenance", daemon=True)
        self.service, self.audit, self.stop = service, audit, threading.Event()
        settings = service.settings
        self.every = settings.refresh_s if settings.read_only else settings.retention_every_s

    def run(self) -> None:
        while not self.stop.wait(self.every):
            try:
                if self.service.settings.read_only:
                    self.service.refresh()
                else:
                    run_retention(self.service, self.audit, SYSTEM)
            except Exception:  # a failed round is logged and retried at the next one
                logging.getLogger(__name__).exception("maintenance of %s failed", self.service.settings.gallery)


def run_retention(service: SearchService, audit: AuditLog, caller: Caller) -> list[int]:
    """Apply the maximum age now and audit it (when it removed something or a person asked)."""
    removed = service.apply_retention()
    if removed or caller is not SYSTEM:
        audit.record(caller, "retention", max_age_s=service.settings.max_age_s, removed=len(removed),
                     entry_ids=removed)
    return removed


def create_app(settings: ServeSettings, extractor: Any = None) -> FastAPI:
    """The application serving ``settings.gallery`` with ``extractor`` (None: search by entry and track only).

    The gallery is opened here (errors surface before a server starts); retention runs once at start-up and then
    on its schedule while the application's lifespan runs; shutdown waits for the write under way.

    Example:
        ```python
        app = create_app(ServeSettings("gallery/", Path("keys.json"), Path("audit/audit.jsonl")), extractor)
        uvicorn.run(app, host="127.0.0.1", port=8080)
        ```
    """
    service = SearchService(settings, extractor)
    keys = KeyRing(settings.keys_file)
    audit = AuditLog(settings.audit_file, settings.audit_max_bytes, settings.audit_backups)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if settings.max_age_s is not None and not settings.read_only:
            run_retention(service, audit, SYSTEM)
        maintenance = _Maintenance(service, audit)
        maintenance.start()
        try:
            yield
        finally:
            maintenance.stop.set()
            maintenance.join()
            service.close()
            audit.close()

    def authenticate(request: Request) -> None:
        """Every route but the public ones needs a valid key (deny by default)."""
        if request.url.path in PUBLIC:
            return
        caller = keys.caller(_presented_key(request))
        if caller is None:
            raise HTTPException(401, "a valid API key is needed: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
                                headers={"WWW-Authenticate": "Bearer"})
        request.state.caller = caller

    app = FastAPI(title="reid-serve", summary="Cross-camera person search over a reid-sdk gallery",
                  lifespan=lifespan, dependencies=[Depends(authenticate)])
    app.state.service, app.state.audit = service, audit
    app.mount("/page", StaticFiles(directory=PAGE), name="page")
    _add_error_handlers(app)

    @app.middleware("http")
    async def log_and_limit(request: Request, call_next: Any) -> Response:
        started = time.perf_counter()
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > settings.limits.max_bytes * MAX_FILES):
            response: Response = JSONResponse({"detail": "the request body is larger than the service accepts"}, 413)
        else:
            response = await call_next(request)
        caller = getattr(request.state, "caller", None)
        access_log.info(json.dumps({"method": request.method, "path": request.url.path, "status": response.status_code,
                                    "ms": round(1000 * (time.perf_counter() - started), 2),
                                    "who": caller.name if caller else None,
                                    "client": request.client.host if request.client else None}))
        return response

    def search_request(k: Annotated[int, Query(ge=1, le=settings.k_max)] = 10,
                       cameras: Annotated[list[str] | None, Query(description="keep only these cameras")] = None,
                       since: float | None = None, until: float | None = None, exclude_own_camera: bool = True,
                       rerank: bool = False) -> SearchRequest:
        return SearchRequest(k, tuple(cameras) if cameras is not None else None, since, until, exclude_own_camera,
                             rerank)

    Searching = Annotated[SearchRequest, Depends(search_request)]

    def answer(request: Request, query: dict[str, Any], search: SearchRequest, matches: list[Match]) -> SearchOut:
        audit.record(_caller(request), "search", query=query, filters=asdict(search), results=len(matches),
                     entry_ids=[match.entry_id for match in matches])
        return SearchOut(query=query, matches=[_match_out(match) for match in matches])

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(PAGE / "index.html")

    @app.get("/healthz", tags=["operations"])
    def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    def ready() -> dict[str, Any]:
        """Readiness: the gallery is open (and how many entries it holds)."""
        return {"status": "ready", "entries": len(service.gallery), "model": service.has_model,
                "read_only": settings.read_only}

    @app.get("/api/whoami", tags=["browse"])
    def whoami(request: Request) -> dict[str, str]:
        """The caller's key name and role (the page's log-in check)."""
        caller = _caller(request)
        return {"name": caller.name, "role": caller.role}

    @app.get("/api/cameras", tags=["browse"])
    def cameras() -> list[dict[str, Any]]:
        """The gallery's cameras and how many tracks each has."""
        return [{"camera": camera, "tracks": count} for camera, count in service.catalog.cameras().items()]

    @app.get("/api/cameras/{camera}/tracks", tags=["browse"])
    def tracks(camera: str, offset: Annotated[int, Query(ge=0)] = 0,
               limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> dict[str, Any]:
        """One camera's tracks, earliest first, a page at a time."""
        found = service.catalog.tracks(service.catalog.camera(camera))
        return {"camera": camera, "total": len(found), "tracks": [
            TrackOut(name=f"{track.camera}:{track.track_id}" if track.track_id is not None else None,
                     camera=track.camera, track_id=track.track_id, entry_ids=track.entry_ids,
                     first_time=track.first_time, last_time=track.last_time,
                     thumbnail=_thumbnail_url(track.entry_ids[0]))
            for track in found[offset : offset + limit]]}

    @app.get("/api/search/track/{name}", tags=["search"])
    def search_track(request: Request, name: str, search: Searching) -> SearchOut:
        """Cross-camera matches of a track, named CAMERA:TRACK_ID."""
        return answer(request, {"by": "track", "track": name}, search, service.search_track(name, search))

    @app.get("/api/search/entry/{entry_id}", tags=["search"])
    def search_entry(request: Request, entry_id: int, search: Searching) -> SearchOut:
        """Matches of a stored entry."""
        return answer(request, {"by": "entry", "entry": entry_id}, search, service.search_entry(entry_id, search))

    @app.post("/api/search/crop", tags=["search"])
    def search_crop(request: Request, search: Searching, image: Annotated[UploadFile, File()],
                    camera: Annotated[str | None, Query(description="the camera that saw the crop")] = None
                    ) -> SearchOut:
        """Matches of an uploaded crop (JPEG, PNG, BMP or WebP); the audit keeps its SHA-256, not the image."""
        data = image.file.read(settings.limits.max_bytes + 1)
        crop = decode_crop(data, settings.limits, image.filename or "upload")
        query = {"by": "crop", "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "camera": camera}
        return answer(request, query, search, service.search_crop(crop, search, camera))

    @app.get("/api/entries/{entry_id}/thumbnail", tags=["browse"], response_class=Response)
    def thumbnail(entry_id: int) -> Response:
        """A JPEG of the entry's picture (its crop, or its track's best frame), from the media roots only."""
        return Response(service.thumbnail(entry_id), media_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=300"})

    @app.post("/api/entries", tags=["admin"], dependencies=[Depends(_admin)])
    def add_entries(request: Request, images: Annotated[list[UploadFile], File()], camera: Annotated[str, Form()],
                    track_id: Annotated[str | None, Form()] = None, timestamp: Annotated[float | None, Form()] = None,
                    identity: Annotated[str | None, Form()] = None) -> dict[str, list[int]]:
        """Add crops as entries (admin); the ids come back once the gallery is saved."""
        caller = _caller(request)
        if len(images) > MAX_FILES:
            raise UploadRefused(f"{len(images)} images in one request, more than {MAX_FILES}", 413)
        crops = [decode_crop(upload.file.read(settings.limits.max_bytes + 1), settings.limits,
                             upload.filename or "upload") for upload in images]
        track = int(track_id) if track_id is not None and track_id.lstrip("-").isdigit() else track_id
        ids = service.add_crops(crops, service.camera_label(camera), track, time.time() if timestamp is None
                                else timestamp, identity)
        audit.record(caller, "add", camera=camera, track=track_id, entries=len(ids), entry_ids=ids)
        return {"entry_ids": ids}

    @app.post("/api/videos", tags=["admin"], dependencies=[Depends(_admin)])
    def add_video(request: Request, body: VideoIn) -> dict[str, dict[int, int]]:
        """Add one entry per track of a video (admin); {track id: entry id} once saved."""
        caller = _caller(request)
        added = service.add_video(body.video, body.tracks, service.camera_label(body.camera), body.start_time)
        audit.record(caller, "add", video=body.video, camera=body.camera, entries=len(added),
                     entry_ids=list(added.values()))
        return {"entries": added}

    @app.post("/api/erase", tags=["admin"], dependencies=[Depends(_admin)])
    def erase(request: Request, body: EraseIn) -> dict[str, Any]:
        """Erase one person's entries by id or by track (admin); audited."""
        caller = _caller(request)
        if (body.entry_ids is None) == (body.track is None):
            raise ValueError("give exactly one of entry_ids and track")
        if body.track is not None:
            ids = service.erase_track(body.track)
            removed = len(ids)
        else:
            ids, removed = body.entry_ids or [], service.erase_entries(body.entry_ids or [])
        audit.record(caller, "erase", track=body.track, requested=ids, removed=removed)
        return {"removed": removed}

    @app.post("/api/retention", tags=["admin"], dependencies=[Depends(_admin)])
    def retention(request: Request) -> dict[str, Any]:
        """Apply the maximum age now (admin); audited."""
        if settings.max_age_s is None:
            raise ValueError("this service has no maximum age: start it with --max-age-days")
        return {"removed": len(run_retention(service, audit, _caller(request)))}

    @app.get("/api/audit", tags=["admin"], dependencies=[Depends(_admin)])
    def read_audit(limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
                   action: str | None = None) -> list[dict[str, Any]]:
        """The newest audit records, oldest first (admin)."""
        return audit.read(limit, action)

    return app


def _add_error_handlers(app: FastAPI) -> None:
    """Library errors as one-line JSON answers: bad input 422, unknown 404, read-only 409, refused uploads 413/415."""

    def handler(status: int | None) -> Any:
        async def handle(_: Request, error: Exception) -> JSONResponse:
            code = status if status is not None else getattr(error, "status", 422)
            return JSONResponse({"detail": str(error.args[0]) if error.args else str(error)}, code)
        return handle

    app.add_exception_handler(UploadRefused, handler(None))
    app.add_exception_handler(ValueError, handler(422))
    app.add_exception_handler(KeyError, handler(404))
    app.add_exception_handler(ReadOnlyError, handler(409))
