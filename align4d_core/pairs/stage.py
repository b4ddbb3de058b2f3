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
"""

from __future__ import annotations

import time
from dataclasses import asdict

import torch

from .. import storage
from ..config import PairsConfig, to_dict
from ..done import is_done, measure_peak_memory, read_done, write_done
from ..errors import InputError
from ..hashing import hash_json
from ..stages import PairURIs
from .route import PairInputs, load_inputs, make_pair

__all__ = ["pairs_config_hash", "pairs_stage"]


def pairs_config_hash(config: PairsConfig, device: torch.device, fovy_deg: float) -> str:
    """What a generated pair depends on besides its inputs: the pair settings, the device type
    (``dtype = "auto"`` is float16 on CUDA) and the field of view of the front view."""
    return hash_json({"pairs": to_dict(config), "device": torch.device(device).type, "fovy_deg": fovy_deg})


def pairs_stage(inputs: PairInputs, out: str, config: PairsConfig, device: torch.device, *, fovy_deg: float,
                item: str | None = None) -> PairURIs:  # fmt: skip
    """The item's pair: given, recorded in ``out/done.json``, or generated now (module notes)."""
    if inputs.complete:
        return inputs.given_pair()
    device = torch.device(device)
    try:
        hashes = inputs.hashes()
        config_hash = pairs_config_hash(config, device, fovy_deg)
        if is_done(out, config_hash=config_hash, input_hashes=hashes):
            return _recorded(read_done(out)["extra"]["uris"], inputs, out)
        loaded = load_inputs(inputs, config)
    except InputError as exc:
        raise exc.within(item=item) from None
    if storage.exists(out):  # an older pair (other settings or inputs): start clean
        storage.remove(out, recursive=True)
    started = time.perf_counter()
    try:
        result = make_pair(inputs, loaded, out, config, device, fovy_deg)
    except InputError as exc:
        _discard(out)
        raise exc.within(item=item) from None
    except BaseException:
        _discard(out)
        raise
    timings = {"pairs": time.perf_counter() - started, **result.record.get("seconds", {})}
    write_done(out, config_hash=config_hash, input_hashes=hashes, timings=timings,
               peak_memory_bytes=measure_peak_memory(), extra={"uris": asdict(result.uris), **result.record})  # fmt: skip
    return result.uris


def _recorded(uris: dict, inputs: PairInputs, out: str) -> PairURIs:
    """The recorded pair, with the given files at the inputs' current URIs (the dataset may have
    moved since; equal content hashes got us here) and the generated ones in ``out``."""
    inside = str(out).rstrip("/") + "/"
    current = {name: uri if uri is not None and str(uri).startswith(inside) else getattr(inputs, name)
               for name, uri in uris.items()}  # fmt: skip
    return PairURIs(**current)


def _discard(out: str) -> None:
    try:
        if storage.exists(out):
            storage.remove(out, recursive=True)
    except OSError:  # the original error matters more than a failed clean-up
        pass
