"""One video-3D pair to one 4D object: search, optimise, export (DESIGN.md §9 folder layout).

The stages write into the output folder as they finish: ``search.json`` (and its plot), then
checkpoints while optimising, then the object, videos and evaluation views, and ``done.json`` last.
Run again on the same folder, it skips what is done: a finished object is returned at once, a
search is reused when its inputs and settings match, and an interrupted optimisation resumes from
its last checkpoint.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from . import storage
from .config import RunConfig, to_dict
from .done import is_done, measure_peak_memory, read_done, write_done
from .errors import InputError
from .export import export_object
from .guidance import Guidance, load_guidance
from .hashing import hash_json, hash_uri
from .media import read_masks, read_video
from .objects import load_object
from .oda import SearchResult, search
from .optimize import OptimizeResult, Pair, ProgressCallback, optimize
from .plots import plot_losses, plot_search

log = logging.getLogger(__name__)

StageCallback = Callable[[str], None]
"""``stage(name)`` when a stage starts: "search", "optimize", "export"."""


@dataclass
class Inputs:
    video: str
    object: str
    masks: str | None = None


def device_of(name: str | None = None) -> torch.device:
    """The requested device, or CUDA when there is one."""
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def resolve_guidance(config: RunConfig, device: torch.device) -> tuple[Guidance, RunConfig]:
    """The guidance backend, and the config with ``backend`` set to the one actually used.

    ``backend = "auto"`` uses Zero123 when its weights can be loaded and falls back to the
    weight-free ``anchor`` otherwise, with a warning; the config that is recorded (and hashed)
    names the backend that ran, so no table can confuse the two.
    """
    backend = config.guidance.backend
    if backend == "auto":
        from .guidance import MissingWeightsError

        try:
            guidance = load_guidance(replace(config.guidance, backend="zero123", local_files_only=True), device)
            backend = "zero123"
        except MissingWeightsError:
            log.warning("no local Zero123 weights for %r (guidance.model): using the weight-free 'anchor' "
                        "guidance; set guidance.backend='zero123' for the full message", config.guidance.model)  # fmt: skip
            guidance, backend = load_guidance(replace(config.guidance, backend="anchor"), device), "anchor"
    else:
        guidance = load_guidance(config.guidance, device)
    return guidance, replace(config, guidance=replace(config.guidance, backend=backend))


def load_pair(inputs: Inputs, config: RunConfig, device: torch.device) -> Pair:
    """Frames on white, masks (given, else the video's alpha, else none) and the 3D input."""
    video = read_video(inputs.video)
    masks = read_masks(inputs.masks) if inputs.masks is not None else video.alpha
    try:
        gaussians = load_object(inputs.object, n_from_mesh=config.mesh_samples)
    except InputError as exc:
        raise exc.within(field="object") from None
    masks = None if masks is None else masks.to(device)
    pair = Pair(video.frames.to(device), masks, gaussians.to(device), fovy_deg=config.fovy_deg)
    return pair.validate()


def input_hashes(inputs: Inputs) -> dict[str, str]:
    hashes = {"video": hash_uri(inputs.video), "object": hash_uri(inputs.object)}
    if inputs.masks is not None:
        hashes["masks"] = hash_uri(inputs.masks)
    return hashes


def run_search(pair: Pair, config: RunConfig, guidance: Guidance) -> SearchResult:
    """ODA, or the fixed distance of DreamGaussian4D when ``method.oda`` is off."""
    if not config.method.oda:
        d = config.method.fixed_distance
        return SearchResult(d, d, [], [], None, None, f"oda off: fixed distance {d} (DreamGaussian4D)")
    mask = pair.masks[0] if pair.masks is not None else None
    return search(pair.gaussians, pair.frames[0], mask, guidance, config.search, pair.fovy_deg)


def generate(
    inputs: Inputs,
    out: str,
    config: RunConfig,
    *,
    device: str | None = None,
    progress: ProgressCallback | None = None,
    stage: StageCallback | None = None,
    eval_size: int | None = None,
) -> dict:
    """Search, optimise and export one pair into ``out``; returns the contents of ``done.json``."""
    started = time.perf_counter()
    dev = device_of(device)
    hashes = input_hashes(inputs)
    guidance, config = resolve_guidance(config, dev)
    config_hash = hash_json(to_dict(config))
    if is_done(out, config_hash=config_hash, input_hashes=hashes):
        return read_done(out)
    notify = stage or (lambda name: None)
    pair = load_pair(inputs, config, dev)
    timings: dict[str, float] = {}

    notify("search")
    found = _cached_search(out, config_hash, hashes)
    if found is None:
        found = run_search(pair, config, guidance)
        storage.write_json(storage.join(out, "search.json"), {
            **found.to_json(), "config_hash": config_hash, "input_hashes": hashes, "guidance": config.guidance.backend})  # fmt: skip
        if found.distances:
            plot_search(found, storage.join(out, "plots", "search.png"))
    timings.update({f"search_{k}": v for k, v in found.seconds.items()})

    notify("optimize")
    result = optimize(pair, found.vaod, found.maod, config, guidance, checkpoints=storage.join(out, "checkpoints"),
                      progress=progress)  # fmt: skip
    timings["optimize"] = result.seconds
    _write_history(out, result)

    notify("export")
    t0 = time.perf_counter()
    size = eval_size or config.export.eval_size or 512
    artifacts = export_object(out, result.gaussians, result.field, n_frames=pair.frames.shape[0],
                              distance=found.vaod, video_frames=pair.frames.cpu(), config=config.export,
                              eval_size=size, fovy_deg=pair.fovy_deg,
                              metadata={"vaod": found.vaod, "maod": found.maod, "guidance": config.guidance.backend})  # fmt: skip
    timings["export"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - started
    extra = {"vaod": found.vaod, "maod": found.maod, "guidance": config.guidance.backend,
             "method": to_dict(config.method), "gaussians": len(result.gaussians), "artifacts": artifacts,
             "final_loss": result.history[-1]["loss"] if result.history else None,
             "resumed_from": result.resumed_from, "config": to_dict(config)}  # fmt: skip
    write_done(out, config_hash=config_hash, input_hashes=hashes, timings=timings,
               peak_memory_bytes=measure_peak_memory(), extra=extra)  # fmt: skip
    return read_done(out)


def _cached_search(out: str, config_hash: str, hashes: dict[str, str]) -> SearchResult | None:
    uri = storage.join(out, "search.json")
    if not storage.exists(uri):
        return None
    data = storage.read_json(uri)
    if data.get("config_hash") != config_hash or data.get("input_hashes") != hashes:
        return None
    fields = {k: data[k] for k in SearchResult.__dataclass_fields__ if k in data}
    return SearchResult(**fields)


def _write_history(out: str, result: OptimizeResult) -> None:
    storage.write_json(storage.join(out, "losses.json"), {"history": result.history, "densify": result.densify})
    plot_losses({"loss": result.history}, storage.join(out, "plots", "losses.png"), title="optimisation loss")
