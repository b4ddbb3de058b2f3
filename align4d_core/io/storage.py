"""Every read and write of align4d goes through here, on fsspec URIs (DESIGN.md §2).

A location is a URI: a plain path, ``file://``, ``memory://`` (tests) or ``s3://bucket/prefix``
(s3fs). S3 endpoints and credentials come from fsspec's own configuration, never from code: set
``FSSPEC_S3_ENDPOINT_URL`` (or ``FSSPEC_S3`` as JSON, e.g. ``{"client_kwargs": {...}}``) and the
usual ``AWS_*`` variables, the way s3fs users already do.

Writes are atomic. On a local disk the bytes go to a temporary file beside the target, which is then
renamed over it; on an object store the object is created by one PUT (or one completed multipart
upload) of a finished local file. A write that fails half-way therefore leaves nothing behind, and a
reader never sees half an artifact.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import IO, Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from align4d_core.errors import InputError

__all__ = [
    "atomic_local_path",
    "exists",
    "filesystem",
    "is_local",
    "isdir",
    "join",
    "listdir",
    "local_copy",
    "makedirs",
    "open_atomic",
    "read_bytes",
    "read_json",
    "read_text",
    "remove",
    "safe_child",
    "write_bytes",
    "write_json",
    "write_text",
]


def filesystem(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem and the path inside it for ``uri`` (a plain path means local)."""
    fs, path = fsspec.core.url_to_fs(str(uri))
    return fs, path


def is_local(uri: str) -> bool:
    return isinstance(filesystem(uri)[0], LocalFileSystem)


def join(base: str, *parts: str) -> str:
    """``base/part/...`` for any URI; parts are trusted names, not user input (see safe_child)."""
    out = str(base).rstrip("/")
    for part in parts:
        part = str(part).strip("/")
        if part:
            out = f"{out}/{part}"
    return out


def safe_child(root: str, relative: str) -> str:
    """``root/relative`` for a path read from a dataset, refusing one that escapes ``root``.

    Manifest paths are relative to the dataset root (DESIGN.md §3). An absolute path, a URI with a
    scheme, or ``..`` components that climb out of the root are refused, so that nothing read from a
    manifest can make align4d read or write outside the folder it was given.
    """
    rel = str(relative)
    if not rel or not rel.strip():
        raise InputError("empty path", uri=rel)
    if "://" in rel or rel.startswith(("/", "\\", "~")) or (len(rel) > 1 and rel[1] == ":"):
        raise InputError("path must be relative to the dataset root", uri=rel)
    if "\\" in rel:
        raise InputError("path must use '/' separators", uri=rel)
    normalised = posixpath.normpath(rel)
    if normalised == ".." or normalised.startswith("../") or PurePosixPath(normalised).is_absolute():
        raise InputError("path escapes the dataset root", uri=rel)
    if normalised == ".":
        raise InputError("path names the dataset root itself", uri=rel)
    return join(root, normalised)


def exists(uri: str) -> bool:
    fs, path = filesystem(uri)
    fs.invalidate_cache(path)
    return fs.exists(path)


def isdir(uri: str) -> bool:
    fs, path = filesystem(uri)
    fs.invalidate_cache(path)
    return fs.isdir(path)


def listdir(uri: str) -> list[str]:
    """Names (not paths) of the entries directly under ``uri``, sorted; [] for a missing folder."""
    fs, path = filesystem(uri)
    fs.invalidate_cache(path)
    try:
        entries = fs.ls(path, detail=False)
    except FileNotFoundError:
        return []
    names = {posixpath.basename(str(e).rstrip("/")) for e in entries}
    names.discard("")
    return sorted(names)


def makedirs(uri: str) -> None:
    fs, path = filesystem(uri)
    fs.makedirs(path, exist_ok=True)


def remove(uri: str, recursive: bool = False) -> None:
    """Delete a file (or a folder with ``recursive``); a missing target is not an error."""
    fs, path = filesystem(uri)
    fs.invalidate_cache(path)
    if fs.exists(path):
        fs.rm(path, recursive=recursive)
    fs.invalidate_cache(path)


def read_bytes(uri: str) -> bytes:
    fs, path = filesystem(uri)
    try:
        return fs.cat_file(path)
    except FileNotFoundError:
        raise InputError("file not found", uri=str(uri)) from None
    except IsADirectoryError:
        raise InputError("is a folder, a file was expected", uri=str(uri)) from None


def read_text(uri: str) -> str:
    data = read_bytes(uri)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", uri=str(uri)) from None


def read_json(uri: str) -> Any:
    text = read_text(uri)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc.msg} at line {exc.lineno}", uri=str(uri)) from None


@contextlib.contextmanager
def atomic_local_path(uri: str, suffix: str = "") -> Iterator[str]:
    """A local file path to write ``uri``'s content to; it becomes ``uri`` only if the block succeeds.

    For writers that need a real path (ffmpeg, plyfile, matplotlib). On a local target the
    temporary file lies beside it, so that the final rename is atomic on the same filesystem.
    """
    fs, path = filesystem(uri)
    if isinstance(fs, LocalFileSystem):
        folder = os.path.dirname(path) or "."
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp{suffix}")
        try:
            yield tmp
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return
    with tempfile.TemporaryDirectory(prefix="align4d-") as tmpdir:
        tmp = os.path.join(tmpdir, "part" + suffix)
        yield tmp
        parent = posixpath.dirname(path)
        if parent:
            fs.makedirs(parent, exist_ok=True)
        fs.put_file(tmp, path)
        fs.invalidate_cache(path)


@contextlib.contextmanager
def open_atomic(uri: str, mode: str = "wb") -> Iterator[IO]:
    """Open ``uri`` for writing; the object appears, whole, only when the block ends without error."""
    if mode not in ("wb", "w"):
        raise ValueError(f"open_atomic writes only ('wb' or 'w'), got {mode!r}")
    with atomic_local_path(uri) as tmp:
        encoding = None if "b" in mode else "utf-8"
        with open(tmp, mode, encoding=encoding) as handle:
            yield handle


def write_bytes(uri: str, data: bytes) -> None:
    with open_atomic(uri, "wb") as handle:
        handle.write(data)


def write_text(uri: str, text: str) -> None:
    write_bytes(uri, text.encode("utf-8"))


def write_json(uri: str, obj: Any) -> None:
    """JSON with sorted keys and a final newline, so that equal content gives equal bytes."""
    write_text(uri, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


@contextlib.contextmanager
def local_copy(uri: str, suffix: str = "") -> Iterator[str]:
    """A local path holding ``uri``'s bytes, for readers that need a path (ffmpeg, trimesh)."""
    fs, path = filesystem(uri)
    if isinstance(fs, LocalFileSystem):
        if not os.path.exists(path):
            raise InputError("file not found", uri=str(uri))
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="align4d-") as tmpdir:
        tmp = os.path.join(tmpdir, "copy" + (suffix or posixpath.splitext(path)[1]))
        try:
            fs.get_file(path, tmp)
        except FileNotFoundError:
            raise InputError("file not found", uri=str(uri)) from None
        yield tmp


def copy_file(src: str, dst: str) -> None:
    """Copy one file between any two URIs, atomically at the destination."""
    with local_copy(src) as local, atomic_local_path(dst) as tmp:
        shutil.copyfile(local, tmp)
