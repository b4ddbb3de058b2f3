"""The pair stage: an item's inputs -> its video-3D pair, written into the run, resumable.

An item that gives both a video and a 3D object passes through untouched (its URIs point into the
dataset; nothing is written). Any other item gets its missing modalities generated into ``out``
(``<run>/items/<id>/pair/`` in a run, ``<OUT>/pair/`` for ``align4d generate``), never into the input
dataset, with ``done.json`` written last (DESIGN.md §2): the same inputs, pair settings, device
type and field of view find the marker and return the recorded URIs without loading a model.

Bad input (an empty prompt, an unreadable image, a video of fewer than 2 frames, an object file of
an unknown format, missing weights) raises :class:`InputError` naming the item and the field,
before anything is written. A failure while generating removes the folder, so no half-made pair is
ever left beside a marker.

The methods of an item share its pair and may reach it at once, on different workers: the generation
holds a lease beside the folder (``.pair.lock``, :mod:`align4d_core.io.lease`), so exactly one worker
generates; the others wait for its marker (at most :data:`PAIR_WAIT_S`) and reuse the pair. A worker
killed while generating leaves a lease that is taken over once it is :data:`PAIR_LEASE_S` old.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from align4d_core.config import PairsConfig, to_dict
from align4d_core.errors import InputError
from align4d_core.io import lease, storage
from align4d_core.io.hashing import hash_json
from align4d_core.io.manifest import Item
from align4d_core.io.markers import Outcome, code_hash, is_done, run_stage
from align4d_core.pairs.route import Loaded, load_inputs, make_pair
from align4d_core.runtime import device_of

__all__ = ["PAIR_LEASE_S", "PAIR_WAIT_S", "item_pair", "pair_lock", "pairs_config_hash", "pairs_stage"]

PAIR_LEASE_S = lease.LEASE_S
"""A generating worker's lease outlives its last heartbeat by this (then another worker takes over)."""
PAIR_WAIT_S = lease.WAIT_S
"""How long a worker waits for another that is generating the same pair before it fails."""


def pairs_config_hash(config: PairsConfig, device: torch.device, fovy_deg: float) -> str:
    """What a generated pair depends on besides its inputs: the pair settings, the device type
    (``dtype = "auto"`` is float16 on CUDA) and the field of view of the front view."""
    return hash_json({"pairs": to_dict(config), "device": torch.device(device).type, "fovy_deg": fovy_deg})


def pairs_stage(
    inputs: Item, out: str, config: PairsConfig, device: torch.device, *, fovy_deg: float, item: str | None = None
) -> Item:
    """The item with its pair: given, recorded in ``out/done.json``, or generated now (module notes)."""
    if inputs.complete:
        return inputs
    device = torch.device(device)
    try:
        hashes = inputs.source_hashes()
    except InputError as exc:
        raise exc.within(item=item) from None

    def load() -> Loaded:
        try:
            return load_inputs(inputs, config)
        except InputError as exc:
            raise exc.within(item=item) from None

    def body() -> Outcome:
        loaded = checked if checked is not None else load()
        if storage.exists(out):  # an older pair (other settings or inputs): start clean
            storage.remove(out, recursive=True)
        try:
            result = make_pair(inputs, loaded, out, config, device, fovy_deg)
        except InputError as exc:
            _discard(out)
            raise exc.within(item=item) from None
        except BaseException:
            _discard(out)
            raise
        if held is not None:
            held.ensure()  # taken over while generating (we stalled past the lease): write no marker
        extra = {"uris": result.item.pair_files(), **result.record}
        return Outcome(extra, dict(result.record.get("seconds", {})))

    config_hash, code = pairs_config_hash(config, device, fovy_deg), code_hash("align4d_core.pairs")
    done = lambda: is_done(out, config_hash=config_hash, input_hashes=hashes, code=code)
    stage = lambda: run_stage(out, "pairs", config_hash=config_hash, inputs=hashes, code=code, body=body)
    checked, held = None, None
    if done():
        extra = stage()
    else:  # one worker generates; the others wait for its marker, then the marker path reuses its pair
        checked = load()  # bad input fails here, before anything (the lease included) is written
        with lease.exclusive(pair_lock(out), lease_s=PAIR_LEASE_S, wait_s=PAIR_WAIT_S, settle=done) as held:
            extra = stage()
    return _recorded(extra, inputs, out)


def pair_lock(out: str) -> str:
    """The lease of the pair folder ``out``: ``.<name>.lock`` beside it (outside it, so that clearing
    an older pair keeps it, and not a prefix of it on S3)."""
    head, _, name = str(out).rstrip("/").rpartition("/")
    return f"{head}/.{name}.lock" if head else f".{name}.lock"


def item_pair(
    dataset: str,
    item: Item,
    out: str | None = None,
    config: PairsConfig | None = None,
    device=None,
    fovy_deg: float | None = None,
) -> Item:
    """A manifest item of ``dataset``, resolved, with its pair: its own files when it gives a video and
    a 3D object, else the pair generated into ``out`` by :func:`pairs_stage`, resumably.

    Without ``out`` only complete items can be served (nothing may be written into the dataset).
    """
    from align4d_core.scene.cameras import FOVY_DEG

    resolved = item.resolved(dataset)
    if resolved.complete:
        return resolved
    if out is None:
        missing = [name for name in ("video", "object") if getattr(item, name) is None]
        raise InputError(
            f"no {' or '.join(missing)}: generating them needs an output folder for the pair",
            item=item.id,
            field=missing[0],
        )
    dev = device_of(None if device is None else str(device))
    return pairs_stage(resolved, out, config or PairsConfig(), dev, fovy_deg=fovy_deg or FOVY_DEG, item=item.id)


def _recorded(extra: dict, inputs: Item, out: str) -> Item:
    """The pair's item: the generated files in ``out``, the given ones at the inputs' current URIs
    (the dataset may have moved since; equal content hashes got us here), the made image and prompt."""
    inside = str(out).rstrip("/") + "/"
    files = {
        name: uri if uri is not None and str(uri).startswith(inside) else getattr(inputs, name)
        for name, uri in extra["uris"].items()
    }
    quadruplet = extra.get("quadruplet", {})
    image = quadruplet.get("image")
    image = image if image is not None and str(image).startswith(inside) else inputs.image
    return replace(inputs, **files, image=image, prompt=quadruplet.get("prompt", inputs.prompt))


def _discard(out: str) -> None:
    try:
        if storage.exists(out):
            storage.remove(out, recursive=True)
    except OSError:  # the original error matters more than a failed clean-up
        pass
