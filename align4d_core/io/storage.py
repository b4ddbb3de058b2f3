"""Every read and write of align4d goes through here, on fsspec URIs (DESIGN.md §2).

A location is a URI: a plain path, ``file://``, ``memory://`` (tests) or ``s3://bucket/prefix``
(s3fs). S3 endpoints and credentials come from fsspec's own configuration, never from code: set
``FSSPEC_S3_ENDPOINT_URL`` (or ``FSSPEC_S3`` as JSON, e.g. ``{"client_kwargs": {...}}``) and the
usual ``AWS_*`` variables, the way s3fs users already do.

Writes are atomic. On a local disk the bytes go to a temporary file beside the target, which is then
renamed over it; on an object store the object is created by one PUT (or one completed multipart
upload) of a finished local file. A write that fails half-way therefore leaves nothing behind, and a
reader never sees half an artifact.

An unreachable store is waited for, not failed on (issue 15: "the S3 endpoint goes away for 30 s").
Every call here (and the few readers that use an fsspec filesystem directly, through
:func:`patiently`) is retried with exponential back-off while it fails on a *transient* error — a
refused, reset or timed-out connection, a 5xx or SlowDown answer — for up to
``ALIGN4D_STORAGE_PATIENCE_S`` seconds (default :data:`DEFAULT_PATIENCE_S`, 300 s) from its first
failure; a missing file, a permission error or bad input is raised at once. Why here and not in
botocore's or s3fs's retry settings: those count attempts, not time (botocore's back-off is random,
its "standard" mode stops retrying connection errors once its retry quota is spent, s3fs does not
retry a refused connection at all), so they give no bound one can state as "an outage of N seconds";
and Prefect's task retries re-run a whole stage and do not cover the flows' own reads and writes
(``row.json``, the rows the dataset flow collects), where a 30 s outage failed the run. The retry
keeps writes atomic: what is retried is the single PUT (or s3fs's multipart upload, which s3fs aborts
when it fails) of a finished local file, so an interrupted write still leaves no object.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import posixpath
import random
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import PurePosixPath
from typing import IO, Any, TypeVar

import fsspec
from fsspec.implementations.local import LocalFileSystem

from align4d_core.errors import InputError

__all__ = [
    "DEFAULT_PATIENCE_S",
    "PATIENCE_ENV",
    "atomic_local_path",
    "exists",
    "filesystem",
    "is_local",
    "is_transient",
    "isdir",
    "join",
    "listdir",
    "local_copy",
    "makedirs",
    "open_atomic",
    "patience_s",
    "patiently",
    "read_bytes",
    "read_json",
    "read_text",
    "remove",
    "safe_child",
    "write_bytes",
    "write_json",
    "write_text",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

PATIENCE_ENV = "ALIGN4D_STORAGE_PATIENCE_S"
DEFAULT_PATIENCE_S = 300.0
"""How long a storage call waits for an unreachable store, from its first failure (see the module notes)."""
_FIRST_DELAY_S, _MAX_DELAY_S = 0.5, 8.0  # back-off between attempts: 0.5, 1, 2, 4, 8, 8, ... s (±25 %)

_TRANSIENT_NAMES = frozenset(
    {
        # botocore
        "EndpointConnectionError",
        "ConnectionClosedError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "ProxyConnectionError",
        "HTTPClientError",
        "ResponseStreamingError",
        # aiohttp (s3fs's transport), fsspec
        "ClientConnectionError",
        "ClientConnectorError",
        "ClientOSError",
        "ServerDisconnectedError",
        "ServerTimeoutError",
        "ClientPayloadError",
        "FSTimeoutError",
    }
)
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "ServiceUnavailable",
        "InternalError",
        "RequestTimeout",
        "ThrottlingException",
        "RequestLimitExceeded",
        "500",
        "502",
        "503",
        "504",
    }
)
_NEVER_TRANSIENT = (
    InputError,
    FileNotFoundError,
    FileExistsError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
)


def is_transient(error: BaseException) -> bool:
    """A network or store hiccup that waiting may get past; a missing file or a refusal never is.

    s3fs turns S3's answers into ``OSError`` subclasses and keeps botocore's error as the cause, so
    the chain is walked: a connection error anywhere in it, or an S3 error code or HTTP status that
    means "try later", makes the error transient. A plain ``OSError`` (a full local disk) is not.
    """
    if isinstance(error, _NEVER_TRANSIENT):
        return False
    seen: set[int] = set()
    todo: list[BaseException | None] = [error]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, (ConnectionError, TimeoutError)) or type(e).__name__ in _TRANSIENT_NAMES:
            return True
        if isinstance(e, OSError) and e.errno in (errno.ECONNREFUSED, errno.ECONNRESET, errno.ETIMEDOUT):
            return True
        response = getattr(e, "response", None)
        if isinstance(response, dict):
            code = str((response.get("Error") or {}).get("Code", ""))
            status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
            if code in _TRANSIENT_CODES or (isinstance(status, int) and status >= 500):
                return True
        todo += [e.__cause__, e.__context__]
    return False


def patience_s() -> float:
    """Seconds a call waits for an unreachable store: ``ALIGN4D_STORAGE_PATIENCE_S``, else 300; 0 waits not."""
    raw = os.environ.get(PATIENCE_ENV, "").strip()
    if not raw:
        return DEFAULT_PATIENCE_S
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{PATIENCE_ENV} must be a number of seconds, got {raw!r}") from None
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"{PATIENCE_ENV} must be a finite number of seconds >= 0, got {raw!r}")
    return value


class _Outage:
    """Whether calls are failing now, so that one outage gives one warning, not one per call or thread."""

    lock = threading.Lock()
    since: float | None = None

    @classmethod
    def began(cls, uri: str, error: BaseException, patience: float) -> None:
        with cls.lock:
            if cls.since is not None:
                return
            cls.since = time.monotonic()
        store = "S3" if str(uri).startswith(("s3://", "s3a://")) else "storage"
        log.warning("%s unreachable (%s: %s), retrying for up to %.0f s", store, type(error).__name__, error, patience)

    @classmethod
    def ended(cls) -> None:
        with cls.lock:
            since, cls.since = cls.since, None
        if since is not None:
            log.warning("storage reachable again after %.1f s", time.monotonic() - since)


def patiently(uri: str, action: Callable[[], T]) -> T:
    """``action()``, retried with back-off while it fails on a transient error, for up to :func:`patience_s`.

    ``action`` must be safe to repeat: a read, a listing, or the upload of a finished local file.
    The patience counts from this call's first failure; the last attempt is made at its end, so an
    outage shorter than the patience is always ridden out. Then the last error is raised (Prefect's
    task retries, which also see it as transient, may still try the stage again).
    """
    deadline: float | None = None
    delay = _FIRST_DELAY_S
    while True:
        try:
            result = action()
        except Exception as error:
            if not is_transient(error):
                raise
            now = time.monotonic()
            if deadline is None:
                patience = patience_s()
                deadline = now + patience
                _Outage.began(uri, error, patience)
            if now >= deadline:
                log.error("storage still unreachable at %s, giving up: %s", uri, error)
                raise
            time.sleep(min(delay * random.uniform(0.75, 1.25), max(0.0, deadline - now)))
            delay = min(delay * 2, _MAX_DELAY_S)
            with contextlib.suppress(Exception):
                filesystem(uri)[0].invalidate_cache()
            continue
        if deadline is not None or _Outage.since is not None:
            _Outage.ended()
        return result


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

    def check() -> bool:
        fs.invalidate_cache(path)
        return fs.exists(path)

    return patiently(uri, check)


def isdir(uri: str) -> bool:
    fs, path = filesystem(uri)

    def check() -> bool:
        fs.invalidate_cache(path)
        return fs.isdir(path)

    return patiently(uri, check)


def listdir(uri: str) -> list[str]:
    """Names (not paths) of the entries directly under ``uri``, sorted; [] for a missing folder."""
    fs, path = filesystem(uri)

    def ls() -> list:
        fs.invalidate_cache(path)
        try:
            return fs.ls(path, detail=False)
        except FileNotFoundError:
            return []

    entries = patiently(uri, ls)
    names = {posixpath.basename(str(e).rstrip("/")) for e in entries}
    names.discard("")
    return sorted(names)


def makedirs(uri: str) -> None:
    fs, path = filesystem(uri)
    patiently(uri, lambda: fs.makedirs(path, exist_ok=True))


def remove(uri: str, recursive: bool = False) -> None:
    """Delete a file (or a folder with ``recursive``); a missing target is not an error."""
    fs, path = filesystem(uri)

    def rm() -> None:
        fs.invalidate_cache(path)
        if fs.exists(path):
            with contextlib.suppress(FileNotFoundError):  # a retry after a lost answer to our own delete
                fs.rm(path, recursive=recursive)
        fs.invalidate_cache(path)

    patiently(uri, rm)


def read_bytes(uri: str) -> bytes:
    fs, path = filesystem(uri)
    try:
        return patiently(uri, lambda: fs.cat_file(path))
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

        def upload() -> None:  # one PUT of a finished file: repeating it after a failure is safe
            parent = posixpath.dirname(path)
            if parent:
                fs.makedirs(parent, exist_ok=True)
            fs.put_file(tmp, path)
            fs.invalidate_cache(path)

        patiently(uri, upload)


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
            patiently(uri, lambda: fs.get_file(path, tmp))
        except FileNotFoundError:
            raise InputError("file not found", uri=str(uri)) from None
        yield tmp


def copy_file(src: str, dst: str) -> None:
    """Copy one file between any two URIs, atomically at the destination."""
    with local_copy(src) as local, atomic_local_path(dst) as tmp:
        shutil.copyfile(local, tmp)
