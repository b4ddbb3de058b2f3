"""Flow ``align4d-item``: one (item, method) of a run — pairs → search → optimize → render → evaluate.

Deployed as ``x4d-item`` on the GPU work pool, so each GPU worker pulls one item's job; the
dataset-wide flow calls it in-process in the embedded default. It writes ``row.json`` (the item's
line of the results table) into its object folder, also when it fails, and then re-raises, so the
flow run's state is honest and the table still has the error.
"""

from __future__ import annotations

import traceback

from prefect import flow

from align4d_core import storage
from align4d_core.runs import item_folder
from align4d_core.stages import stage_records
from tasks import evaluate, optimize, pairs, render, search
from tasks.common import result_storage


@flow(name="align4d-item")
def align4d_item(dataset: str, item: dict, method: str, run_root: str, settings: dict | None = None) -> dict:
    settings = settings or {}
    out = item_folder(run_root, item["id"], method)
    keep = result_storage(run_root)
    try:
        pair = pairs(dataset, item)
        found = search.with_options(result_storage=keep)(pair, out, settings, method)
        optimized = optimize.with_options(result_storage=keep)(pair, out, settings, method, found)
        rendered = render.with_options(result_storage=keep)(pair, out, settings, method, found, optimized)
        metrics = evaluate.with_options(result_storage=keep)(pair, out, settings, method, rendered)
    except BaseException as error:
        storage.write_json(storage.join(out, "row.json"), failed_row(item["id"], method, error))
        raise
    row = completed_row(item["id"], method, out, found, optimized, metrics)
    storage.write_json(storage.join(out, "row.json"), row)
    return row


def completed_row(item_id: str, method: str, out: str, found: dict, optimized: dict, metrics: dict) -> dict:
    records = stage_records(out)
    peaks = [r.get("peak_memory_bytes") or 0 for r in records.values()]
    search_json = storage.read_json(storage.join(out, "search.json"))
    row = {
        "item": item_id, "method": method, "status": "completed", "error": None,
        "guidance": search_json.get("guidance"), "psnr": metrics.get("psnr"), "ssim": metrics.get("ssim"),
        "vaod": found["vaod"], "maod": found["maod"], "gaussians": optimized["gaussians"],
        "peak_memory_gib": max(peaks) / 2**30 if peaks else None,
    }  # fmt: skip
    for name, record in records.items():
        row[f"seconds_{name}"] = record["timings"].get(name)
    row["seconds_total"] = sum(v for k, v in row.items() if k.startswith("seconds_") and v is not None)
    return row


def failed_row(item_id: str, method: str, error: BaseException) -> dict:
    message = str(error) or type(error).__name__
    last = traceback.extract_tb(error.__traceback__)[-1:] if error.__traceback__ else []
    where = f" ({last[0].filename.rsplit('/', 1)[-1]}:{last[0].lineno})" if last else ""
    return {"item": item_id, "method": method, "status": "failed", "error": f"{type(error).__name__}: {message}{where}"}
