"""The stages of one pair's pipeline, each a function from URIs to URIs (DESIGN.md §1, §2).

search → optimize → render → evaluate. A stage reads its inputs from storage, writes its outputs
into the pair's object folder (DESIGN.md §9) and, last, a ``stages/<name>/done.json`` marker that
holds the config hash, the input hashes, the timings, the peak memory and the stage's small JSON
result. A stage whose marker matches returns that result without recomputing, so a re-run resumes;
an optimisation killed half-way resumes from its checkpoint. ``align4d generate`` calls the stages
in a row; the Prefect tasks in ``tasks/`` call the same functions, one per task.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import torch

from . import storage
from .config import RunConfig, to_dict
from .deformation import load_deformation, save_deformation
from .done import is_done, measure_peak_memory, read_done, write_done
from .errors import InputError
from .export import ARTIFACTS, write_eval_views, write_frame_plys, write_front_vs_input, write_turntable
from .guidance import Guidance, load_guidance
from .hashing import hash_json, hash_uri
from .media import read_masks, read_video
from .metrics import evaluate_views
from .objects import load_object
from .oda import SearchResult, search
from .optimize import Pair, ProgressCallback, optimize
from .plots import plot_losses, plot_search
from .ply import read_gaussians_ply, write_gaussians_ply

log = logging.getLogger(__name__)

STAGES = ("search", "optimize", "render", "evaluate")


@dataclass(frozen=True)
class PairURIs:
    """Where a video-3D pair's files are."""

    video: str
    object: str
    masks: str | None = None
    eval: str | None = None  # ground-truth views, Consistent4D layout, when the dataset has them

    def hashes(self) -> dict[str, str]:
        """Content hashes of the inputs (cache keys; a changed file invalidates every stage)."""
        fields = {k: v for k, v in asdict(self).items() if v is not None}
        hashes = {}
        for name, uri in fields.items():
            try:
                hashes[name] = hash_uri(uri)
            except InputError as exc:
                raise exc.within(field=name) from None
        return hashes


def device_of(name: str | None = None) -> torch.device:
    """The requested device, or CUDA when there is one."""
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def resolve_backend(config: RunConfig, device: torch.device) -> RunConfig:
    """The config with ``guidance.backend`` set to the backend that will actually run.

    ``backend = "auto"`` is Zero123 when its weights are on this machine (a local folder or the hub
    cache; it never downloads) and the weight-free ``anchor`` when they are absent, with a warning.
    Weights that are there but not whole (a truncated file, a renamed key, parts that do not fit:
    :class:`~align4d_core.weights.IncompleteModelError`) are an error, never a silent fallback. The
    resolved config is the one recorded and hashed, so no table can confuse the two.
    """
    if config.guidance.backend != "auto":
        return config
    local = replace(config.guidance, backend="zero123", local_files_only=True)
    backend = "zero123" if _weights_available(local, str(device)) else "anchor"
    return replace(config, guidance=replace(local, backend=backend, local_files_only=backend == "zero123"))


@functools.lru_cache(maxsize=4)
def _weights_available(config, device: str) -> bool:
    """Whether Zero123 loads from this machine alone; asked (and warned about) once per process."""
    from .guidance import MissingWeightsError

    try:
        _guidance(config, device)
        return True
    except MissingWeightsError:
        log.warning("no local Zero123 weights for %r (guidance.model): using the weight-free 'anchor' "
                    "guidance; set guidance.backend='zero123' for the full message", config.model)  # fmt: skip
        return False


@functools.lru_cache(maxsize=2)
def _guidance(config, device: str) -> Guidance:
    """Loaded once per process and config: the search and optimise stages share the weights."""
    return load_guidance(config, device)


def guidance_for(config: RunConfig, device: torch.device) -> Guidance:
    return _guidance(config.guidance, str(device))


def load_pair(uris: PairURIs, config: RunConfig, device: torch.device) -> Pair:
    """Frames on white, masks (given, else the video's alpha, else none) and the 3D input."""
    try:
        video = read_video(uris.video)
    except InputError as exc:
        raise exc.within(field="video") from None
    try:
        masks = read_masks(uris.masks) if uris.masks is not None else video.alpha
    except InputError as exc:
        raise exc.within(field="masks") from None
    try:
        gaussians = load_object(uris.object, n_from_mesh=config.mesh_samples)
    except InputError as exc:
        raise exc.within(field="object") from None
    masks = None if masks is None else masks.to(device)
    return Pair(video.frames.to(device), masks, gaussians.to(device), fovy_deg=config.fovy_deg).validate()


# --- the stage protocol ----------------------------------------------------------------------


def _marker(out: str, stage: str) -> str:
    return storage.join(out, "stages", stage)


STAGE_ONLY_SECTIONS: dict[str, frozenset[str]] = {
    "metrics": frozenset({"evaluate"}),
    "pairs": frozenset(),
}
"""Config sections only some stages depend on: changing how metrics are computed must not redo the
optimisation, and how a pair was generated reaches the stages through the pair's content hashes."""


def stage_config_hash(config: RunConfig, stage: str) -> str:
    """The hash of the part of ``config`` that ``stage``'s result depends on."""
    values = to_dict(config)
    for section, stages in STAGE_ONLY_SECTIONS.items():
        if stage not in stages:
            values.pop(section, None)
    return hash_json(values)


def run_stage(name: str, out: str, config: RunConfig, inputs: dict[str, str], body: Callable[[], dict]) -> dict:
    """``body()`` unless the stage's marker matches ``config`` and ``inputs``; returns its result."""
    marker = _marker(out, name)
    config_hash = stage_config_hash(config, name)
    if is_done(marker, config_hash=config_hash, input_hashes=inputs):
        return read_done(marker)["extra"]
    started = time.perf_counter()
    result = body()
    write_done(marker, config_hash=config_hash, input_hashes=inputs, timings={name: time.perf_counter() - started},
               peak_memory_bytes=measure_peak_memory(), extra=result)  # fmt: skip
    return result


def stage_records(out: str) -> dict[str, dict]:
    """The done markers of the stages that finished in ``out`` (timings, peak memory, results)."""
    records = {}
    for name in STAGES:
        record = read_done(_marker(out, name))
        if record is not None:
            records[name] = record
    return records


# --- the stages -----------------------------------------------------------------------------------


def find_distances(pair: Pair, config: RunConfig, device: torch.device) -> SearchResult:
    """ODA's VAOD and MAOD, or the fixed distance of DreamGaussian4D when ``method.oda`` is off."""
    if not config.method.oda:
        d = config.method.fixed_distance
        return SearchResult(d, d, [], [], None, None, f"oda off: fixed distance {d} (DreamGaussian4D)")
    mask = pair.masks[0] if pair.masks is not None else None
    return search(pair.gaussians, pair.frames[0], mask, guidance_for(config, device), config.search, pair.fovy_deg)


def search_stage(uris: PairURIs, out: str, config: RunConfig, device: torch.device) -> dict:
    """ODA (eq. 2-5, 11) or the fixed distance of ``oda=False``: writes search.json and its plot."""

    def body() -> dict:
        found = find_distances(load_pair(uris, config, device), config, device)
        storage.write_json(storage.join(out, "search.json"), {**found.to_json(), "guidance": config.guidance.backend})
        if found.distances:
            plot_search(found, storage.join(out, "plots", "search.png"))
        return {"vaod": found.vaod, "maod": found.maod, "maod_rule": found.maod_rule,
                "maod_fallback": found.maod_fallback, "seconds": found.seconds}  # fmt: skip

    return run_stage("search", out, config, uris.hashes(), body)


def optimize_stage(uris: PairURIs, out: str, config: RunConfig, device: torch.device, found: dict,
                   progress: ProgressCallback | None = None) -> dict:  # fmt: skip
    """MGJA under AO (Section III-C/D): writes the canonical Gaussians, the field and the losses."""

    def body() -> dict:
        pair = load_pair(uris, config, device)
        result = optimize(pair, found["vaod"], found["maod"], config, guidance_for(config, device),
                          checkpoints=storage.join(out, "checkpoints"), progress=progress)  # fmt: skip
        write_gaussians_ply(storage.join(out, ARTIFACTS["canonical"]), result.gaussians.to("cpu"),
                            sh_degree=config.export.ply_sh_degree)  # fmt: skip
        viewing = {"distance": found["vaod"], "fovy_deg": config.fovy_deg, "vaod": found["vaod"],
                   "maod": found["maod"], "guidance": config.guidance.backend}  # fmt: skip
        save_deformation(storage.join(out, ARTIFACTS["deformation"]), result.field.cpu(), viewing)
        storage.write_json(storage.join(out, "losses.json"), {"history": result.history, "densify": result.densify})
        plot_losses({"loss": result.history}, storage.join(out, "plots", "losses.png"), title="optimisation loss")
        return {"seconds": result.seconds, "gaussians": len(result.gaussians), "resumed_from": result.resumed_from,
                "final_loss": result.history[-1]["loss"] if result.history else None}  # fmt: skip

    return run_stage("optimize", out, config, uris.hashes(), body)


def render_stage(uris: PairURIs, out: str, config: RunConfig, found: dict, eval_size: int | None = None) -> dict:
    """Everything a person or a metric looks at: per-frame PLYs, the two videos, the eval views."""

    def body() -> dict:
        canonical = read_gaussians_ply(storage.join(out, ARTIFACTS["canonical"]))
        field = load_deformation(storage.join(out, ARTIFACTS["deformation"]))
        frames = read_video(uris.video).frames
        n, height, width = frames.shape[:3]
        distance, fovy = found["vaod"], config.fovy_deg
        size = config.export.eval_size or eval_size or _ground_truth_size(uris.eval) or 512
        uri = functools.partial(storage.join, out)
        write_frame_plys(uri(ARTIFACTS["frames"]), canonical, field, n, sh_degree=config.export.ply_sh_degree)
        write_turntable(uri(ARTIFACTS["turntable"]), canonical, field, n, distance=distance, config=config.export,
                        width=width, height=height, fovy_deg=fovy)  # fmt: skip
        write_front_vs_input(uri(ARTIFACTS["front_vs_input"]), canonical, field, frames, distance=distance,
                             fps=config.export.fps, fovy_deg=fovy)  # fmt: skip
        write_eval_views(uri(ARTIFACTS["eval"]), canonical, field, n, distance=distance, size=size, fovy_deg=fovy)
        return {name: uri(path) for name, path in ARTIFACTS.items()} | {"eval_size": size}

    return run_stage("render", out, config, uris.hashes(), body)


def _ground_truth_size(folder: str | None) -> int | None:
    """The size of the ground-truth views, so that the eval renders match them (DESIGN.md §7)."""
    if folder is None:
        return None
    from .media import list_frames, read_image

    first = storage.join(folder, "eval_0")
    names = list_frames(first)
    return max(read_image(storage.join(first, names[0]))[0].shape[:2]) if names else None


def evaluate_stage(uris: PairURIs, out: str, config: RunConfig) -> dict:
    """The metrics of DESIGN.md §7 of the eval views against the dataset's ground truth (metrics.json)."""

    def body() -> dict:
        if uris.eval is None:
            metrics = {"missing": {"all": "the item has no ground-truth views (manifest field 'eval')"}}
        else:
            metrics = evaluate_views(storage.join(out, ARTIFACTS["eval"]), uris.eval, config.metrics)
        storage.write_json(storage.join(out, "metrics.json"), metrics)
        return {k: v for k, v in metrics.items() if k != "views"}

    return run_stage("evaluate", out, config, uris.hashes(), body)
