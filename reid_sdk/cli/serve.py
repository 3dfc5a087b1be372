"""``reid-serve``: the person-search service and page over a gallery, and its key, erasure and retention commands.

    reid-serve --gallery gallery/ --model model.onnx --keys keys.json --audit audit/audit.jsonl --media crops/
    reid-serve --gallery gallery/ --keys keys.json --audit audit/worker2.jsonl --read-only --port 8081
    reid-serve keys add alice --role search --keys keys.json      # prints the key once; the file keeps its hash
    reid-serve keys list --keys keys.json
    reid-serve keys remove alice --keys keys.json
    reid-serve erase --gallery gallery/ --track c1:7 --audit audit/audit.jsonl
    reid-serve erase --gallery gallery/ --entries 12 13 --audit audit/audit.jsonl
    reid-serve retention --gallery gallery/ --max-age-days 30 --audit audit/audit.jsonl

``--gallery`` is a directory (FAISS + SQLite), ``milvus-lite:FILE.db`` or ``http://host:19530``. Every API route needs a
key from ``--keys``; roles ``search`` and ``admin``. TLS: ``--ssl-certfile`` / ``--ssl-keyfile`` (uvicorn's own), or a
reverse proxy in front. Erase while a FAISS writer service runs through its API (``POST /api/erase``): a command-line
erasure reaches a running service's memory only when it saves or restarts.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Sequence
from pathlib import Path

from reid_sdk.cli.common import (EXIT_OK, add_camera_standardise_option, add_device_option, add_model_option,
                                 add_subparser, configure_logging, fail, make_parser)
from reid_sdk.serve.keys import ROLES, Caller, add_key, list_keys, remove_key
from reid_sdk.serve.settings import ServeSettings
from reid_sdk.serve.uploads import UploadLimits

PROG = "reid-serve"
COMMANDS = ("keys", "erase", "retention")
DAY_S = 86_400.0


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gallery", required=True, help="gallery directory, milvus-lite:FILE.db or http://host:19530")
    parser.add_argument("--keys", type=Path, default=Path("keys.json"), help="the API key file")
    parser.add_argument("--audit", type=Path, default=Path("audit/audit.jsonl"),
                        help="this process's audit trail (JSON lines, rotated)")
    parser.add_argument("--max-age-days", type=float, help="retention: remove entries older than this")
    parser.add_argument("--crop-dir", type=Path, help="where crops added through the API are kept")


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``reid-serve OPTIONS`` (running the service); :func:`build_command_parser` parses the rest."""
    parser = make_parser(PROG, __doc__)
    _common(parser)
    add_model_option(parser, "ONNX / OpenVINO / TensorRT / torch model of the gallery (without one: search by entry "
                             "and by track only)", required=False)
    add_device_option(parser)
    add_camera_standardise_option(parser)
    parser.add_argument("--media", type=Path, action="append", default=[],
                        help="a folder whose images and videos thumbnails may be cut from (repeatable)")
    parser.add_argument("--read-only", action="store_true", help="a read-only worker: refuse writes, reload the "
                                                                 "gallery when the writer saved it")
    parser.add_argument("--refresh-s", type=float, default=30.0, help="a read-only worker's reload interval")
    parser.add_argument("--retention-every-s", type=float, default=3600.0, help="interval of retention runs")
    parser.add_argument("--k-max", type=int, default=100, help="the most results one search returns")
    parser.add_argument("--max-upload-mb", type=float, default=5.0, help="the largest crop upload")
    parser.add_argument("--max-pixels", type=int, default=16_000_000, help="the most pixels an uploaded crop declares")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--ssl-certfile", help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--ssl-keyfile", help="the certificate's private key (PEM)")
    parser.add_argument("--graceful-s", type=float, default=30.0,
                        help="on SIGTERM / Ctrl-C, how long in-flight requests may take to finish")
    return parser


def build_command_parser() -> argparse.ArgumentParser:
    """The parser of ``reid-serve keys|erase|retention ...``."""
    parser = make_parser(PROG, __doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    keys = add_subparser(commands, "keys", "manage API keys (stored hashed)")
    actions = keys.add_subparsers(dest="action", required=True)
    add = add_subparser(actions, "add", "add a key and print it (once)")
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, required=True)
    remove = add_subparser(actions, "remove", "revoke a key")
    remove.add_argument("name")
    add_subparser(actions, "list", "list the keys' names, roles and creation times")
    for action in (add, remove, actions.choices["list"]):
        action.add_argument("--keys", type=Path, default=Path("keys.json"), help="the API key file")
    erase = add_subparser(commands, "erase", "erase one person's entries by entry ids or by track (audited)")
    _common(erase)
    what = erase.add_mutually_exclusive_group(required=True)
    what.add_argument("--entries", type=int, nargs="+", help="entry ids")
    what.add_argument("--track", help="CAMERA:TRACK_ID")
    retention = add_subparser(commands, "retention", "remove the entries older than --max-age-days now (audited)")
    _common(retention)
    return parser


def _settings(args: argparse.Namespace, **values) -> ServeSettings:
    max_age = None if args.max_age_days is None else args.max_age_days * DAY_S
    return ServeSettings(args.gallery, args.keys, args.audit, crop_dir=args.crop_dir, max_age_s=max_age, **values)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn  # the serve extra; imported only to run

    from reid_sdk.serve.app import create_app

    if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
        raise ValueError("--ssl-certfile and --ssl-keyfile go together")
    extractor = None
    if args.model:
        from reid_sdk.inference.extractor import FeatureExtractor

        extractor = FeatureExtractor(args.model, device=args.device)
    limits = UploadLimits(max_bytes=int(args.max_upload_mb * (1 << 20)), max_pixels=args.max_pixels)
    settings = _settings(args, media_roots=tuple(args.media), read_only=args.read_only, refresh_s=args.refresh_s,
                         retention_every_s=args.retention_every_s, k_max=args.k_max, limits=limits,
                         camera_standardise=args.camera_standardise)
    if not settings.keys_file.is_file():
        raise ValueError(f"no key file at {settings.keys_file}: add a key first (reid-serve keys add NAME --role admin "
                         f"--keys {settings.keys_file}); every route but the health checks needs one")
    app = create_app(settings, extractor)
    uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_level=args.log_level,
                ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile,
                timeout_graceful_shutdown=args.graceful_s, timeout_keep_alive=5)
    return EXIT_OK


def _keys(args: argparse.Namespace) -> int:
    if args.action == "add":
        print(add_key(args.keys, args.name, args.role))
        print(f"{PROG}: key {args.name!r} ({args.role}) added to {args.keys}: it is shown only now", file=sys.stderr)
    elif args.action == "remove":
        remove_key(args.keys, args.name)
        print(f"key {args.name!r} removed from {args.keys}")
    else:
        for key in list_keys(args.keys):
            print(f"{key.name}\t{key.role}\t{key.created}")
    return EXIT_OK


def _offline(args: argparse.Namespace) -> int:
    from reid_sdk.serve.app import run_retention
    from reid_sdk.serve.audit import AuditLog
    from reid_sdk.serve.service import SearchService

    settings = _settings(args)
    caller = Caller(f"cli:{getpass.getuser()}", "admin")
    audit = AuditLog(settings.audit_file)
    service = SearchService(settings)
    try:
        if args.command == "retention":
            if settings.max_age_s is None:
                raise ValueError("retention needs --max-age-days")
            print(f"removed {len(run_retention(service, audit, caller))} entries older than {args.max_age_days:g} days")
        elif args.track is not None:
            ids = service.erase_track(args.track)
            audit.record(caller, "erase", track=args.track, requested=ids, removed=len(ids))
            print(f"erased {len(ids)} entries of track {args.track}")
        else:
            removed = service.erase_entries(args.entries)
            audit.record(caller, "erase", track=None, requested=args.entries, removed=removed)
            print(f"erased {removed} of {len(args.entries)} entries")
    finally:
        service.close()
        audit.close()
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``reid-serve``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] in COMMANDS if argv else False
    args = (build_command_parser() if command else build_parser()).parse_args(argv)
    configure_logging(args.log_level, timestamps=not command)
    try:
        if not command:
            return _serve(args)
        return _keys(args) if args.command == "keys" else _offline(args)
    except (ValueError, OSError, ImportError) as error:
        return fail(PROG, error)
    except KeyError as error:
        return fail(PROG, error.args[0])


if __name__ == "__main__":
    sys.exit(main())
