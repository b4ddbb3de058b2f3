"""The stage marker ``done.json`` (DESIGN.md §2): resume a run without recomputing finished work.

Every stage writes its outputs first and ``done.json`` last, so the marker's presence means the
outputs are complete. It records what the outputs were computed from (a config hash and the hashes
of the inputs) and how (code version, timings, peak memory). A re-run skips the stage only when
both hashes match; a missing, unreadable or corrupt marker simply means "not done", so a crash in
the middle of writing one never blocks a re-run.

The code version is recorded for provenance but not compared: a change that alters results must
show in the config (or its hash), otherwise every release would recompute every benchmark.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import logging
import math
import sys
from collections.abc import Mapping
from typing import Any

from . import storage
from .errors import InputError

__all__ = ["DONE_NAME", "code_version", "is_done", "measure_peak_memory", "read_done", "write_done"]

DONE_NAME = "done.json"
_log = logging.getLogger(__name__)


def code_version() -> str:
    """The installed ``align4d`` distribution's version, or ``'unknown'`` outside an install."""
    try:
        return importlib.metadata.version("align4d")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def measure_peak_memory() -> int | None:
    """Peak memory of this process in bytes: CUDA's peak allocation if CUDA is in use, else RSS."""
    try:
        import torch

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            return int(torch.cuda.max_memory_allocated())
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    try:
        import resource  # POSIX only
    except ImportError:  # pragma: no cover - Windows
        return None
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)  # macOS: bytes, Linux: KiB


def write_done(
    stage_uri: str,
    *,
    config_hash: str,
    input_hashes: Mapping[str, str],
    timings: Mapping[str, float],
    peak_memory_bytes: int | None,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """Write ``<stage_uri>/done.json`` atomically (call it after every output); return its URI."""
    if not isinstance(config_hash, str) or not config_hash:
        raise ValueError(f"config_hash must be a non-empty string, got {config_hash!r}")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in input_hashes.items()):
        raise ValueError(f"input_hashes must map names to hash strings, got {dict(input_hashes)!r}")
    clean_timings = {str(k): float(v) for k, v in timings.items()}
    if not all(math.isfinite(v) for v in clean_timings.values()):
        raise ValueError(f"timings must be finite seconds, got {clean_timings!r}")
    record = {
        "config_hash": config_hash,
        "input_hashes": dict(input_hashes),
        "code_version": code_version(),
        "timings": clean_timings,
        "peak_memory_bytes": None if peak_memory_bytes is None else int(peak_memory_bytes),
        "finished_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "extra": dict(extra or {}),
    }
    uri = storage.join(stage_uri, DONE_NAME)
    storage.write_json(uri, record)
    return uri


def read_done(stage_uri: str) -> dict[str, Any] | None:
    """The stage's ``done.json`` as a dict, or None if it is missing or not a readable marker."""
    uri = storage.join(stage_uri, DONE_NAME)
    if not storage.exists(uri):
        return None
    try:
        record = storage.read_json(uri)
    except InputError as exc:
        _log.warning("ignoring a corrupt stage marker: %s", exc)
        return None
    if not isinstance(record, dict):
        _log.warning("ignoring a stage marker that is not a JSON object: %s", uri)
        return None
    return record


def is_done(stage_uri: str, *, config_hash: str, input_hashes: Mapping[str, str]) -> bool:
    """True only if the stage's marker exists and records this config hash and these inputs."""
    record = read_done(stage_uri)
    return (
        record is not None
        and record.get("config_hash") == config_hash
        and record.get("input_hashes") == dict(input_hashes)
    )
