"""Content hashes for cache keys (DESIGN.md §2: a stage whose ``done.json`` matches is skipped).

A key must change exactly when the content changes, wherever the data lives: equal files on local
disk and on S3 hash alike, and a config hashes alike whatever order its keys were written in.
All digests are lowercase hex SHA-256.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import posixpath
from pathlib import PurePath
from typing import Any

from align4d_core.errors import InputError
from align4d_core.io import storage

__all__ = ["canonical_json", "hash_bytes", "hash_json", "hash_uri"]

_CHUNK = 1 << 20


def hash_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace; dataclasses, paths, enums and sets are converted.

    NaN and infinity are refused: they have no JSON form, and a key built from them would be
    ambiguous.
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_plain)


def hash_json(obj: Any) -> str:
    """SHA-256 of :func:`canonical_json`, e.g. of a stage's config dataclass."""
    return hash_bytes(canonical_json(obj).encode("utf-8"))


def hash_uri(uri: str) -> str:
    """SHA-256 of a file's bytes; for a folder, of every file under it with its relative name.

    A folder's digest covers the sorted relative paths (``/`` separated) and each file's digest, so
    renaming, adding, removing or changing any file changes it, and it does not depend on the
    storage backend or on listing order. The whole walk is repeated while the store is unreachable
    (``storage.patiently``): it reads through fsspec directly, beside storage's own calls.
    """
    return storage.patiently(uri, lambda: _hash_uri(uri))


def _hash_uri(uri: str) -> str:
    fs, path = storage.filesystem(uri)
    fs.invalidate_cache(path)
    if fs.isdir(path):
        base = path.rstrip("/")
        files = sorted(posixpath.relpath(p, base) for p in fs.find(base, withdirs=False))
        digest = hashlib.sha256(b"align4d-folder\0")
        for rel in files:
            digest.update(rel.encode("utf-8") + b"\0")
            digest.update(bytes.fromhex(_hash_file(fs, f"{base}/{rel}", uri)))
        return digest.hexdigest()
    return _hash_file(fs, path, uri)


def _hash_file(fs: Any, path: str, uri: str) -> str:
    digest = hashlib.sha256()
    try:
        with fs.open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    except FileNotFoundError:
        raise InputError("file not found", uri=str(uri)) from None
    return digest.hexdigest()


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, PurePath):
        return obj.as_posix()
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=canonical_json)
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", None) == 0:
        return obj.item()  # numpy / torch scalars
    raise TypeError(f"cannot hash a {type(obj).__name__} as JSON: {obj!r}")
