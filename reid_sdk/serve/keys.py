"""API keys of the search service: a JSON file holding each key's name, role and scrypt hash, never the key.

A key reads ``NAME.SECRET``: the name picks the one hash to check, so a request costs one scrypt at most, and a key
that passed once is remembered (as its SHA-256) until the file changes. Two roles: ``search`` (search and browse)
and ``admin`` (also ingest, erase, retention and the audit trail). Keys are managed with ``reid-serve keys``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from reid_sdk._utils.atomic_file import atomic_write

ROLES = ("search", "admin")
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}  # RFC 7914's interactive-login cost: ~16 MiB, tens of ms


@dataclass(frozen=True)
class Caller:
    """Who made a request: the key's name and role."""

    name: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class StoredKey:
    """One key as the file keeps it: no secret, only its salt and scrypt hash (hex)."""

    name: str
    role: str
    salt: str
    hash: str
    created: str


def _scrypt(secret: str, salt: bytes) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, **_SCRYPT)


def _read(path: Path) -> dict[str, StoredKey]:
    """The keys of ``path`` by name; ValueError naming the file when it is not a key file."""
    try:
        document = json.loads(path.read_text())
        keys = [StoredKey(**entry) for entry in document["keys"]]
    except FileNotFoundError:
        return {}
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not a reid-serve key file ({error}): manage it with `reid-serve keys`") from error
    return {key.name: key for key in keys}


def _write(path: Path, keys: dict[str, StoredKey]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as handle:
        handle.write(json.dumps({"keys": [asdict(key) for key in keys.values()]}, indent=1).encode())
    path.chmod(0o600)


def add_key(path: str | Path, name: str, role: str) -> str:
    """Add key ``name`` with ``role`` to the key file ``path`` (made if missing) and return the key: it is shown
    once and stored only as a hash. ValueError for a bad name or role, or a name already there."""
    if not _NAME.match(name):
        raise ValueError(f"key name {name!r} must be 1-64 letters, digits, '_' or '-'")
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    path = Path(path)
    keys = _read(path)
    if name in keys:
        raise ValueError(f"{path} already has a key named {name!r}: remove it first (`reid-serve keys remove`)")
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_bytes(16)
    keys[name] = StoredKey(name, role, salt.hex(), _scrypt(secret, salt).hex(),
                           datetime.now(timezone.utc).isoformat(timespec="seconds"))
    _write(path, keys)
    return f"{name}.{secret}"


def remove_key(path: str | Path, name: str) -> None:
    """Revoke key ``name`` (a running service stops accepting it at its next request). KeyError if absent."""
    path = Path(path)
    keys = _read(path)
    if name not in keys:
        raise KeyError(f"{path} has no key named {name!r}")
    del keys[name]
    _write(path, keys)


def list_keys(path: str | Path) -> list[StoredKey]:
    """The keys of the file, without secrets."""
    return list(_read(Path(path)).values())


class KeyRing:
    """Checks presented keys against the key file, re-reading it when it changes (revocation needs no restart).

    Example:
        ```python
        ring = KeyRing(Path("keys.json"))
        caller = ring.caller("alice.s3cr3t")   # None for an unknown or wrong key
        ```
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = (-1, -1)  # (mtime, size) of the file read; None: no file
        self._keys: dict[str, StoredKey] = {}
        self._verified: dict[str, Caller] = {}  # SHA-256 of keys that passed, until the file changes
        self._load()

    def _load(self) -> None:
        try:
            status = self.path.stat()
        except FileNotFoundError:
            stamp = None
        else:
            stamp = (status.st_mtime_ns, status.st_size)
        if stamp != self._stamp:
            self._keys, self._verified, self._stamp = _read(self.path), {}, stamp

    def caller(self, presented: str | None) -> Caller | None:
        """The caller a presented key stands for, or None (no key, unknown name, wrong secret)."""
        if not presented:
            return None
        digest = hashlib.sha256(presented.encode()).hexdigest()
        with self._lock:
            self._load()
            if digest in self._verified:
                return self._verified[digest]
            name, _, secret = presented.partition(".")
            stored = self._keys.get(name)
            if stored is None or not secret:
                return None
            if not hmac.compare_digest(_scrypt(secret, bytes.fromhex(stored.salt)).hex(), stored.hash):
                return None
            caller = self._verified[digest] = Caller(stored.name, stored.role)
            return caller
