"""What the tables, plots and report read from a run folder (DESIGN.md §2, §9).

Rows are the ``items/<item>/<method>/row.json`` files the per-item flows wrote; rows that have no
item folder (a manifest line that could not be read) are kept by the aggregation in
``tables/rows.json`` and come back from there; an (item, method) that ``run.json`` asked for and that
has no row at all is a row with status ``not run``, so a rebuilt table never hides a gap.
"""

from __future__ import annotations

import logging

from align4d_core.errors import InputError
from align4d_core.io import storage

log = logging.getLogger(__name__)

ROWS_NAME = "rows.json"


def item_dir(run_root: str, item: str, method: str) -> str | None:
    """The (item, method) folder, or None for names that are not one folder name (a bad manifest id)."""
    names = (str(item), str(method))
    if any(not n or n in (".", "..") or "/" in n or "\\" in n for n in names):
        return None
    return storage.join(run_root, "items", *names)


def _item_file(run_root: str, row: dict, name: str):
    folder = item_dir(run_root, row.get("item", ""), row.get("method", ""))
    return None if folder is None else _read_json(storage.join(folder, name))


def _read_json(uri: str):
    """The file's JSON, or None when it is absent or unreadable (logged: a table must still be built)."""
    if not storage.exists(uri):
        return None
    try:
        return storage.read_json(uri)
    except InputError as exc:
        log.warning("skipping an unreadable file: %s", exc)
        return None


def read_run_json(run_root: str) -> dict:
    value = _read_json(storage.join(run_root, "run.json"))
    return value if isinstance(value, dict) else {}


def read_rows(run_root: str) -> list[dict]:
    """Every (item, method) row of the run: row files, kept rows, then what was asked for but never ran."""
    rows: dict[tuple[str, str], dict] = {}
    for item in storage.listdir(storage.join(run_root, "items")):
        for method in storage.listdir(storage.join(run_root, "items", item)):
            row = _read_json(storage.join(run_root, "items", item, method, "row.json"))
            if isinstance(row, dict) and "item" in row and "method" in row:
                rows[(row["item"], row["method"])] = row
    kept = _read_json(storage.join(run_root, "tables", ROWS_NAME))
    for row in kept if isinstance(kept, list) else []:
        if isinstance(row, dict) and "item" in row and "method" in row:
            rows.setdefault((row["item"], row["method"]), row)
    run = read_run_json(run_root)
    for item in run.get("items") or []:
        for method in run.get("methods") or []:
            rows.setdefault(
                (item, method),
                {
                    "item": item,
                    "method": method,
                    "status": "not run",
                    "error": "no row.json: the item's run did not finish",
                },
            )
    return list(rows.values())


def keep_rows(run_root: str, rows: list[dict]) -> str:
    """``tables/rows.json``: the rows the tables were built from, so that a rebuild has them all."""
    uri = storage.join(run_root, "tables", ROWS_NAME)
    storage.write_json(uri, rows)
    return uri


def read_histories(run_root: str, rows: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """The per-step loss records (``losses.json``) of every completed (item, method) that has them."""
    out = {}
    for row in rows:
        if row.get("status") != "completed":
            continue
        data = _item_file(run_root, row, "losses.json")
        history = data.get("history") if isinstance(data, dict) else None
        if isinstance(history, list) and history:
            out[(row["item"], row["method"])] = history
    return out


def read_i3d(run_root: str, rows: list[dict]) -> dict[tuple[str, str], dict]:
    """The I3D logits (``metrics.json``'s ``i3d``) of every completed (item, method) that computed FVD."""
    out = {}
    for row in rows:
        if row.get("status") != "completed":
            continue
        data = _item_file(run_root, row, "metrics.json")
        logits = data.get("i3d") if isinstance(data, dict) else None
        if isinstance(logits, dict) and logits.get("pred"):
            out[(row["item"], row["method"])] = logits
    return out


def read_searches(run_root: str, rows: list[dict]) -> dict[tuple[str, str], dict]:
    """``search.json`` (distances, curves, VAOD, MAOD) of every (item, method) whose search ran."""
    out = {}
    for row in rows:
        data = _item_file(run_root, row, "search.json")
        if isinstance(data, dict) and "vaod" in data:
            out[(row["item"], row["method"])] = data
    return out
