"""Task ``pairs``: the item's video-3D pair, as URIs and content hashes.

A pass-through for items that already give a video and a 3D object; generating the pair from a
prompt or an image arrives with the pair-generation issue (those items fail with that reason).
"""

from __future__ import annotations

from dataclasses import asdict

from prefect import task

from align4d_core.errors import InputError
from align4d_core.manifest import ManifestItem
from align4d_core.runs import pair_uris

from .common import RETRY_DELAYS, retry_transient


@task(name="pairs", retries=len(RETRY_DELAYS), retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=retry_transient)
def pairs(dataset: str, item: dict) -> dict:
    entry = ManifestItem.from_json(item)
    uris = pair_uris(dataset, entry)
    try:
        hashes = uris.hashes()
    except InputError as exc:
        raise exc.within(item=entry.id) from None
    return {"uris": asdict(uris), "hashes": hashes}
