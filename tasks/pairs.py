"""Task ``pairs``: the item, resolved, with its video-3D pair, and the pair's content hashes.

Items that give a video and a 3D object pass through. For any other item the missing modalities
are generated (``align4d_core.pairs``: SDXL, SVD, Shap-E, first frame, front view) into
``<run>/items/<id>/pair/``, shared by all methods of the item and skipped on a re-run by the pair's
``done.json``; generation holds a ``gpu`` slot. The return value is what the later tasks read:
``{"item": the completed Item as a dict, "uris": its pair's files, "hashes": their content hashes,
"seconds": the generation's time or None}``.
"""

from __future__ import annotations

from dataclasses import asdict

from align4d_core.config import build_run_config
from align4d_core.errors import InputError
from align4d_core.io.manifest import Item
from align4d_core.io.markers import read_done
from align4d_core.pairs import item_pair
from align4d_core.pipeline.runs import pair_folder
from align4d_core.runtime import device_of

from .common import gpu_slot, stage_task


@stage_task("pairs")
def pairs(dataset: str, item: dict, run_root: str | None = None, settings: dict | None = None) -> dict:
    entry = Item.from_json(item)
    device = device_of()
    try:
        config = build_run_config(device.type, settings or {})
    except (ValueError, TypeError) as exc:
        raise InputError(str(exc), item=entry.id, field="settings") from None
    out = pair_folder(run_root, entry.id) if run_root is not None else None
    complete = entry.complete
    if complete:
        made = item_pair(dataset, entry)
    else:
        with gpu_slot():
            made = item_pair(dataset, entry, out, config.pairs, device, config.fovy_deg)
    try:
        hashes = made.file_hashes()
    except InputError as exc:
        raise exc.within(item=entry.id) from None
    record = read_done(out) if out is not None and not complete else None
    seconds = (record or {}).get("timings", {}).get("pairs")
    return {"item": asdict(made), "uris": made.pair_files(), "hashes": hashes, "seconds": seconds}
