"""Flow ``align4d-item``: one (item, method) of a run — pairs → search → optimize → render → evaluate.

Deployed as ``x4d-item`` on the GPU work pool, so each GPU worker pulls one item's job; the
dataset-wide flow calls it in-process in the embedded default. It writes ``row.json`` (the item's
line of the results table) into its object folder, also when it fails, and then re-raises, so the
flow run's state is honest and the table still has the error.
"""

from __future__ import annotations

from prefect import flow

from align4d_core.io import storage
from align4d_core.pipeline.runs import item_folder
from align4d_core.reporting.rows import completed_row, failed_row
from tasks import evaluate, optimize, pairs, render, search

__all__ = ["align4d_item", "completed_row", "failed_row"]


@flow(name="align4d-item")
def align4d_item(dataset: str, item: dict, method: str, run_root: str, settings: dict | None = None) -> dict:
    settings = settings or {}
    out = item_folder(run_root, item["id"], method)
    try:
        pair = pairs(dataset, item, run_root, settings)
        found = search(pair, out, settings, method)
        optimized = optimize(pair, out, settings, method, found)
        rendered = render(pair, out, settings, method, found, optimized)
        metrics = evaluate(pair, out, settings, method, rendered)
    except BaseException as error:
        storage.write_json(storage.join(out, "row.json"), failed_row(item["id"], method, error))
        raise
    row = completed_row(item["id"], method, out, found, optimized, metrics, pair_seconds=pair.get("seconds"))
    storage.write_json(storage.join(out, "row.json"), row)
    return row
