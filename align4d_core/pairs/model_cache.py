"""Model weights kept in object storage (``s3://bucket/models/sdxl``), copied to a local cache once.

``from_pretrained`` reads local folders and the Hugging Face hub, not S3. A fleet of GPU workers
that cannot (or should not) each download tens of gigabytes from the hub reads the weights from the
team's bucket instead: the folder (diffusers layout, ``model_index.json`` at its root) is synced to
``$ALIGN4D_MODEL_CACHE/<hash of the URI>/`` (default ``~/.cache/align4d/models``) and that local
folder is what ``from_pretrained`` gets.

"Once per worker": within a process a URI is synced once (later calls return the folder at once);
across processes a ``.align4d-sync.json`` listing of what was copied (names, sizes, ETags) lets the
next process on the machine skip every unchanged file after one listing of the prefix. Each file is
downloaded to a temporary name and renamed, so two processes syncing at once, or a sync killed
half-way, never leave a truncated weight file under its real name.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import posixpath
import uuid

from align4d_core.io import storage

__all__ = ["CACHE_ENV", "cache_root", "is_remote", "sync_model"]

CACHE_ENV = "ALIGN4D_MODEL_CACHE"
_LISTING = ".align4d-sync.json"
log = logging.getLogger(__name__)


def cache_root() -> str:
    """Where synced model folders live: ``$ALIGN4D_MODEL_CACHE`` or ``~/.cache/align4d/models``."""
    return os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "align4d", "models")


def is_remote(model: str) -> bool:
    """A URI with a scheme other than ``file://`` (``s3://``, ``gs://``, ``memory://``, ...)."""
    return "://" in model and not model.startswith("file://")


def sync_model(uri: str) -> str:
    """The local folder holding a copy of the model folder at ``uri`` (see the module notes)."""
    return _sync(uri.rstrip("/"), cache_root())


@functools.cache
def _sync(uri: str, root: str) -> str:
    fs, path = storage.filesystem(uri)
    fs.invalidate_cache(path)
    remote = {
        posixpath.relpath(name, path): {
            "size": info.get("size"),
            "etag": str(info.get("ETag") or info.get("etag") or ""),
        }
        for name, info in storage.patiently(uri, lambda: fs.find(path, detail=True, withdirs=False)).items()
    }
    if not remote:
        raise FileNotFoundError(f"no files under {uri}")
    local = os.path.join(root, hashlib.sha256(uri.encode("utf-8")).hexdigest()[:16])
    os.makedirs(local, exist_ok=True)
    listing_path = os.path.join(local, _LISTING)
    try:
        with open(listing_path, encoding="utf-8") as handle:
            copied = json.load(handle).get("files", {})
    except (OSError, ValueError, AttributeError):
        copied = {}
    fetched = 0
    for relative, info in sorted(remote.items()):
        target = os.path.join(local, *relative.split("/"))
        if copied.get(relative) == info and os.path.isfile(target) and os.path.getsize(target) == info["size"]:
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        partial = f"{target}.{uuid.uuid4().hex}.partial"
        try:
            source = posixpath.join(path, relative)
            storage.patiently(uri, lambda s=source, p=partial: fs.get_file(s, p))  # rewrites `partial` whole
            os.replace(partial, target)
        finally:
            if os.path.exists(partial):
                os.remove(partial)
        fetched += 1
    partial = f"{listing_path}.{uuid.uuid4().hex}.partial"
    with open(partial, "w", encoding="utf-8") as handle:
        json.dump({"uri": uri, "files": remote}, handle, sort_keys=True)
    os.replace(partial, listing_path)
    log.info("model cache %s -> %s: %d of %d files copied", uri, local, fetched, len(remote))
    return local
