"""Stage markers (``done.json``, DESIGN.md §2): the one way anything in align4d resumes.

Every stage — the pair generation, search, optimize, render, evaluate, and ``generate``'s whole
object — runs through :func:`run_stage`: it writes its outputs first and ``done.json`` last, so
the marker's presence means the outputs are complete. The marker records what the outputs were
computed from — a config hash, the hashes of the inputs, and the hash of the code that computed
them (:func:`code_hash`) — and how long it took and how much memory. A re-run skips the stage only
when all three hashes match; a missing, unreadable or corrupt marker simply means "not done", so a
crash in the middle of writing one never blocks a re-run. (An optimisation killed half-way resumes
from its own checkpoints, inside its stage.)

The code hash is that of the modules a stage runs (their source without comments and docstrings,
and every ``align4d_core`` module they import, transitively): a change to the optimizer redoes the
optimisation, a change to the report page does not.
"""

from __future__ import annotations

import ast
import datetime as _dt
import functools
import hashlib
import importlib.metadata
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from align4d_core.errors import InputError
from align4d_core.io import storage

__all__ = [
    "DONE_NAME",
    "STAGES",
    "Outcome",
    "code_hash",
    "code_version",
    "is_done",
    "measure_peak_memory",
    "read_done",
    "run_stage",
    "stage_marker",
    "stage_records",
    "write_done",
]

DONE_NAME = "done.json"
STAGES = ("search", "optimize", "render", "evaluate")
"""The stages after the pair, in order (``align4d_core.pipeline.stages``); each keeps its marker in
``<object folder>/stages/<name>/``."""
_log = logging.getLogger(__name__)


def code_version() -> str:
    """The installed ``align4d`` distribution's version, or ``'unknown'`` outside an install."""
    try:
        return importlib.metadata.version("align4d")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # holds align4d_core/


def _module_file(name: str) -> str | None:
    """The source file of an align4d_core module, found without importing anything."""
    base = os.path.join(_PACKAGE_ROOT, *name.split("."))
    for path in (base + ".py", os.path.join(base, "__init__.py")):
        if os.path.isfile(path):
            return path
    return None


def _imports(name: str, tree: ast.AST, is_package: bool) -> set[str]:
    """The ``align4d_core`` modules a module's source imports (at any depth in its code)."""
    found = set()
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return {m for m in found if m == "align4d_core" or m.startswith("align4d_core.")}


def _stripped_source(tree: ast.AST) -> str:
    """The module's code without docstrings (comments are gone once parsed)."""
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, include_attributes=False)


@functools.lru_cache(maxsize=64)
def code_hash(*roots: str) -> str:
    """Hash of the code of ``roots`` (module names) and every align4d_core module they import."""
    seen: dict[str, str] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = _module_file(name)
        if path is None:
            seen[name] = ""
            continue
        with open(path, encoding="utf-8") as handle:
            tree = ast.parse(handle.read())
        parents = [".".join(name.split(".")[:k]) for k in range(1, len(name.split(".")))]
        todo.extend(_imports(name, tree, path.endswith("__init__.py")) | set(parents))
        seen[name] = _stripped_source(tree)
    digest = hashlib.sha256()
    for name in sorted(seen):
        digest.update(name.encode() + b"\0" + seen[name].encode() + b"\0")
    return digest.hexdigest()[:16]


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
    code: str | None = None,
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
        "code_hash": code,
        "timings": clean_timings,
        "peak_memory_bytes": None if peak_memory_bytes is None else int(peak_memory_bytes),
        "finished_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
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


def is_done(stage_uri: str, *, config_hash: str, input_hashes: Mapping[str, str], code: str | None = None) -> bool:
    """True only if the stage's marker exists and records this config hash, these inputs and (when
    given) this code hash."""
    record = read_done(stage_uri)
    return (
        record is not None
        and record.get("config_hash") == config_hash
        and record.get("input_hashes") == dict(input_hashes)
        and (code is None or record.get("code_hash") == code)
    )


@dataclass
class Outcome:
    """What a stage's body returns when it has timings of its parts to record beside its own."""

    result: dict
    timings: dict[str, float] = field(default_factory=dict)


def run_stage(
    marker: str,
    name: str,
    *,
    config_hash: str,
    inputs: Mapping[str, str],
    code: str,
    body: Callable[[], dict | Outcome],
) -> dict:
    """``body()`` unless the marker in ``marker`` matches; returns the stage's result either way.

    The result (small JSON) is kept in the marker's ``extra``; the stage's own time is its
    ``timings[name]``, beside any part timings an :class:`Outcome` brings.
    """
    if is_done(marker, config_hash=config_hash, input_hashes=inputs, code=code):
        return read_done(marker)["extra"]
    started = time.perf_counter()
    outcome = body()
    if not isinstance(outcome, Outcome):
        outcome = Outcome(outcome)
    timings = {name: time.perf_counter() - started, **outcome.timings}
    write_done(
        marker,
        config_hash=config_hash,
        input_hashes=inputs,
        timings=timings,
        peak_memory_bytes=measure_peak_memory(),
        extra=outcome.result,
        code=code,
    )
    return outcome.result


def stage_marker(out: str, stage: str) -> str:
    """Where ``stage`` of the object folder ``out`` keeps its marker."""
    return storage.join(out, "stages", stage)


def stage_records(out: str) -> dict[str, dict]:
    """The markers of the stages that finished in the object folder ``out`` (timings, peak memory,
    results), by stage name."""
    records = {}
    for name in STAGES:
        record = read_done(stage_marker(out, name))
        if record is not None:
            records[name] = record
    return records
