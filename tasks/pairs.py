"""Task ``pairs``: the item's video-3D pair, as URIs and content hashes.

Items that give a video and a 3D object pass through. For any other item the missing modalities
are generated (``align4d_core.pairs``: SDXL, SVD, Shap-E, first frame, front view) into
``<run>/items/<id>/pair/``, shared by all methods of the item and skipped on a re-run by the pair's
``done.json``; generation holds a ``gpu`` slot. The return value is what the later tasks read:
``{"uris": PairURIs as a dict, "hashes": content hashes, "seconds": the generation's time or None}``.
"""

from __future__ import annotations

from dataclasses import asdict

from prefect import task

from align4d_core.config import build_run_config
from align4d_core.done import read_done
from align4d_core.errors import InputError
from align4d_core.manifest import ManifestItem
from align4d_core.pairs import PairInputs
from align4d_core.runs import pair_folder, pair_uris
from align4d_core.stages import device_of

from .common import RETRY_DELAYS, gpu_slot, retry_transient


@task(name="pairs", retries=len(RETRY_DELAYS), retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=retry_transient)
def pairs(dataset: str, item: dict, run_root: str | None = None, settings: dict | None = None) -> dict:
    entry = ManifestItem.from_json(item)
    device = device_of()
    try:
        config = build_run_config(device.type, settings or {})
    except (ValueError, TypeError) as exc:
        raise InputError(str(exc), item=entry.id, field="settings") from None
    out = pair_folder(run_root, entry.id) if run_root is not None else None
    complete = PairInputs.from_item(dataset, entry).complete
    if complete:
        uris = pair_uris(dataset, entry)
    else:
        with gpu_slot():
            uris = pair_uris(dataset, entry, out, config.pairs, device, config.fovy_deg)
    try:
        hashes = uris.hashes()
    except InputError as exc:
        raise exc.within(item=entry.id) from None
    record = read_done(out) if out is not None and not complete else None
    seconds = (record or {}).get("timings", {}).get("pairs")
    return {"uris": asdict(uris), "hashes": hashes, "seconds": seconds}
