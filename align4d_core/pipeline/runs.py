"""A benchmark run's folder: its id, its layout, and what each item of it needs (DESIGN.md §2).

    <out>/<run_id>/run.json                          parameters, code version, start time
    <out>/<run_id>/items/<item_id>/<method>/         one object folder per (item, method) (§9)
    <out>/<run_id>/items/<item_id>/pair/             the item's generated video-3D pair (pairs stage)
    <out>/<run_id>/tables/results.csv, summary.md    written by the aggregation

The run id is a hash of everything that determines the results (dataset, settings, methods, item
selection), so a run started again with the same parameters lands in the same folder and resumes,
while a run with other parameters never touches it. Item ids are validated by the manifest reader
and paths are resolved with :func:`storage.safe_child`, so nothing read from a manifest can write
outside the run folder.
"""

from __future__ import annotations

import contextlib
import datetime
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from align4d_core.config import SampleConfig
from align4d_core.errors import InputError
from align4d_core.io import storage
from align4d_core.io.hashing import hash_json
from align4d_core.io.manifest import MANIFEST_NAME, Item, parse_manifest
from align4d_core.io.markers import code_version


@dataclass(frozen=True)
class RunSpec:
    """The parameters of a dataset-wide run (flow ``align4d``)."""

    dataset: str
    out: str
    settings: dict  # a config file's contents: overrides of align4d_core.config defaults
    methods: tuple[str, ...]
    items: tuple[str, ...] = ()  # empty: every item
    limit: int | None = None

    @property
    def run_id(self) -> str:
        key = {
            "dataset": self.dataset.rstrip("/"),
            "settings": self.settings,
            "methods": list(self.methods),
            "items": list(self.items),
            "limit": self.limit,
        }
        return hash_json(key)[:12]

    @property
    def root(self) -> str:
        return storage.join(self.out, self.run_id)


def item_folder(run_root: str, item_id: str, method: str) -> str:
    return storage.join(run_root, "items", item_id, method)


def ensure_dataset(dataset: str | None, out: str) -> str:
    """The dataset URI; without one, the bundled sample, written once under ``<out>/sample``."""
    if dataset:
        return dataset
    from align4d_core.sample import write_sample

    root = storage.join(out, "sample")
    if not storage.exists(storage.join(root, MANIFEST_NAME)):
        write_sample(root, SampleConfig())
    return root


def select_items(
    dataset: str, items: tuple[str, ...] = (), limit: int | None = None
) -> tuple[list[Item], list[InputError]]:
    """The manifest's usable items, filtered by id and cut to ``limit``, and its unusable lines.

    A bad manifest line (not JSON, a bad path, a duplicate id) is reported, not fatal: the run
    records it as a failed row and runs every other item. An unknown id in ``items`` is an error.
    """
    usable, errors = parse_manifest(dataset)
    if items:
        known = {i.id for i in usable} | {e.item for e in errors if e.item}
        unknown = [i for i in items if i not in known]
        if unknown:
            raise InputError(f"no item {', '.join(map(repr, unknown))} in the dataset", uri=dataset, field="items")
        usable = [i for i in usable if i.id in items]
        errors = [e for e in errors if e.item in items]
    return (usable[:limit] if limit is not None else usable), errors


def error_item_id(error: InputError, index: int) -> str:
    """A row name for a manifest line that has no usable id (``line-<n>``)."""
    if error.item:
        return error.item
    reason = error.reason
    return reason.split(":", 1)[0].replace(" ", "-") if reason.startswith("line ") else f"manifest-error-{index}"


def pair_folder(run_root: str, item_id: str) -> str:
    """Where an item's generated pair goes: ``items/<id>/pair/``, shared by every method of the item."""
    return storage.join(run_root, "items", item_id, "pair")


def gt_features_folder(method_folder: str) -> str:
    """``items/<id>/gt-features/``: the ground truth's CLIP and I3D features, shared by the item's methods."""
    return storage.join(method_folder.rstrip("/").rsplit("/", 1)[0], "gt-features")


def write_run_json(spec: RunSpec, items: list[str]) -> None:
    """``run.json`` once per run: what was asked for and with which code."""
    uri = storage.join(spec.root, "run.json")
    if storage.exists(uri):
        return
    storage.write_json(
        uri,
        {
            "run_id": spec.run_id,
            "dataset": spec.dataset,
            "settings": spec.settings,
            "methods": list(spec.methods),
            "items": items,
            "limit": spec.limit,
            "code_version": code_version(),
            "started_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        },
    )


# --- progress of a run, in this process --------------------------------------------------------


class RunProgress:
    """The item runs of one run that have ended (completed or failed), as this process saw them end.

    ``align4d run`` shows how many item runs have ended. Counting them in storage is one request per
    item folder and poll (``items/`` listed, then a HEAD of each ``row.json`` and, on S3, a LIST
    behind every HEAD that finds none: some 400 requests every 2 s for 200 running items); one
    recursive listing instead would still grow with the run (a page per 1000 of its files). But
    ``align4d run`` runs flow ``align4d`` in its own process (inline dispatch: every ``align4d-item``
    subflow and its tasks run here), so the flow says when an item run ends
    (:func:`item_run_ended`) and the display reads this counter: no request at all, whatever the
    number of items. Runs dispatched to GPU workers are followed in Prefect's UI instead.
    """

    def __init__(self, run_root: str) -> None:
        self.run_root = _run_key(run_root)
        self._ended: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def ended(self, item_id: str, method: str) -> None:
        with self._lock:
            self._ended.add((item_id, method))

    @property
    def count(self) -> int:
        """How many (item, method) runs have ended; each counted once, also when run again."""
        with self._lock:
            return len(self._ended)


_watching: dict[str, list[RunProgress]] = {}
_watching_lock = threading.Lock()


def _run_key(run_root: str) -> str:
    return str(run_root).rstrip("/")


@contextlib.contextmanager
def watch_progress(run_root: str) -> Iterator[RunProgress]:
    """A :class:`RunProgress` that :func:`item_run_ended` updates for the run at ``run_root`` while
    the block runs (thread-safe: the flow reports from its own threads)."""
    progress = RunProgress(run_root)
    with _watching_lock:
        _watching.setdefault(progress.run_root, []).append(progress)
    try:
        yield progress
    finally:
        with _watching_lock:
            watchers = _watching[progress.run_root]
            watchers.remove(progress)
            if not watchers:
                del _watching[progress.run_root]


def item_run_ended(run_root: str, item_id: str, method: str) -> None:
    """Tell whoever watches the run at ``run_root`` in this process that an item run ended (its row
    is written); nothing when no one does (a worker process, a run without the CLI's display)."""
    with _watching_lock:
        watchers = list(_watching.get(_run_key(run_root), ()))
    for progress in watchers:
        progress.ended(item_id, method)
