"""The stages of one pair's pipeline, each a function from URIs to URIs (DESIGN.md §1, §2).

search → optimize → render → evaluate. A stage reads its inputs from storage, writes its outputs
into the pair's object folder (DESIGN.md §9) and, last, a ``stages/<name>/done.json`` marker
(:func:`~align4d_core.io.markers.run_stage`): a stage whose marker matches returns its
recorded result without recomputing, so a re-run resumes; an optimisation killed half-way resumes
from its checkpoint. ``align4d generate`` calls the stages in a row; the Prefect tasks in
``tasks/`` call the same functions, one per task.
"""

from __future__ import annotations

import functools

import torch

from align4d_core.config import RunConfig, to_dict
from align4d_core.guidance.bundled import guidance_label
from align4d_core.io import storage
from align4d_core.io.hashing import hash_json
from align4d_core.io.manifest import Item
from align4d_core.io.markers import STAGES, code_hash, run_stage, stage_marker, stage_records
from align4d_core.io.media import list_frames, read_image, read_video
from align4d_core.io.ply import read_gaussians_ply, write_gaussians_ply
from align4d_core.io.splat import write_splat
from align4d_core.method.oda import SearchResult, search
from align4d_core.method.optimize import Pair, ProgressCallback, optimize
from align4d_core.metrics import evaluate_views
from align4d_core.metrics.reference import FeatureCache
from align4d_core.pipeline.animated_mesh import ANIMATED_MESH, GAUSSIANS_INPUT, mesh_input, write_animated_glb
from align4d_core.pipeline.devices import guidance_for
from align4d_core.pipeline.export import (
    ARTIFACTS,
    write_eval_views,
    write_frame_plys,
    write_front_vs_input,
    write_turntable,
)
from align4d_core.pipeline.pair import load_pair
from align4d_core.pipeline.plots import plot_losses, plot_search
from align4d_core.pipeline.runs import gt_features_folder
from align4d_core.pipeline.viewer import write_viewer
from align4d_core.scene.deformation import load_deformation, save_deformation

STAGE_CODE: dict[str, tuple[str, ...]] = {
    "search": ("align4d_core.method.oda", "align4d_core.pipeline.pair", "align4d_core.pipeline.devices"),
    "optimize": ("align4d_core.method.optimize", "align4d_core.pipeline.pair", "align4d_core.pipeline.devices"),
    "render": ("align4d_core.pipeline.export", "align4d_core.pipeline.animated_mesh"),
    "evaluate": ("align4d_core.metrics",),
}
"""The modules whose code determines each stage's result (their imports follow): the code hash
in the stage's marker (:func:`~align4d_core.io.markers.code_hash`)."""

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


def _run(name: str, out: str, config: RunConfig, item: Item, body) -> dict:
    return run_stage(
        stage_marker(out, name),
        name,
        config_hash=stage_config_hash(config, name),
        inputs=item.file_hashes(),
        code=code_hash(*STAGE_CODE[name]),
        body=body,
    )


# --- the stages -----------------------------------------------------------------------------------


def find_distances(pair: Pair, config: RunConfig, device: torch.device) -> SearchResult:
    """ODA's VAOD and MAOD, or the fixed distance of DreamGaussian4D when ``method.oda`` is off."""
    if not config.method.oda:
        d = config.method.fixed_distance
        return SearchResult(d, d, [], [], None, None, f"oda off: fixed distance {d} (DreamGaussian4D)")
    mask = pair.masks[0] if pair.masks is not None else None
    return search(pair.gaussians, pair.frames[0], mask, guidance_for(config, device), config.search, pair.fovy_deg)


def search_stage(item: Item, out: str, config: RunConfig, device: torch.device) -> dict:
    """ODA (eq. 2-5, 11) or the fixed distance of ``oda=False``: writes search.json and its plot."""

    def body() -> dict:
        found = find_distances(load_pair(item, config, device), config, device)
        storage.write_json(
            storage.join(out, "search.json"), {**found.to_json(), "guidance": guidance_label(config.guidance)}
        )
        if found.distances:
            plot_search(found, storage.join(out, "plots", "search.png"))
        return {
            "vaod": found.vaod,
            "maod": found.maod,
            "maod_rule": found.maod_rule,
            "maod_fallback": found.maod_fallback,
            "seconds": found.seconds,
        }

    return _run("search", out, config, item, body)


def optimize_stage(
    item: Item, out: str, config: RunConfig, device: torch.device, found: dict, progress: ProgressCallback | None = None
) -> dict:
    """MGJA under AO (Section III-C/D): writes the canonical Gaussians, the field and the losses."""

    def body() -> dict:
        pair = load_pair(item, config, device)
        result = optimize(
            pair,
            found["vaod"],
            found["maod"],
            config,
            guidance_for(config, device),
            checkpoints=storage.join(out, "checkpoints"),
            progress=progress,
        )
        write_gaussians_ply(
            storage.join(out, ARTIFACTS["canonical"]), result.gaussians.to("cpu"), sh_degree=config.export.ply_sh_degree
        )
        viewing = {
            "distance": found["vaod"],
            "fovy_deg": config.fovy_deg,
            "vaod": found["vaod"],
            "maod": found["maod"],
            "guidance": guidance_label(config.guidance),
        }
        save_deformation(storage.join(out, ARTIFACTS["deformation"]), result.field.cpu(), viewing)
        storage.write_json(storage.join(out, "losses.json"), {"history": result.history, "densify": result.densify})
        plot_losses({"loss": result.history}, storage.join(out, "plots", "losses.png"), title="optimisation loss")
        return {
            "seconds": result.seconds,
            "gaussians": len(result.gaussians),
            "resumed_from": result.resumed_from,
            "final_loss": result.history[-1]["loss"] if result.history else None,
        }

    return _run("optimize", out, config, item, body)


def render_stage(item: Item, out: str, config: RunConfig, found: dict, eval_size: int | None = None) -> dict:
    """Everything a person or a metric looks at: per-frame PLYs and splats, the two videos, the eval views,
    the viewer, and for a mesh input the animated mesh."""

    def body() -> dict:
        canonical = read_gaussians_ply(storage.join(out, ARTIFACTS["canonical"]))
        field = load_deformation(storage.join(out, ARTIFACTS["deformation"]))
        frames = read_video(item.video).frames
        n, height, width = frames.shape[:3]
        distance, fovy = found["vaod"], config.fovy_deg
        size = config.export.eval_size or eval_size or _ground_truth_size(item.eval) or 512
        uri = functools.partial(storage.join, out)
        write_splat(uri(ARTIFACTS["canonical_splat"]), canonical)
        write_frame_plys(uri(ARTIFACTS["frames"]), canonical, field, n, sh_degree=config.export.ply_sh_degree)
        write_turntable(
            uri(ARTIFACTS["turntable"]),
            canonical,
            field,
            n,
            distance=distance,
            config=config.export,
            width=width,
            height=height,
            fovy_deg=fovy,
        )
        write_front_vs_input(
            uri(ARTIFACTS["front_vs_input"]),
            canonical,
            field,
            frames,
            distance=distance,
            fps=config.export.fps,
            fovy_deg=fovy,
        )
        write_eval_views(uri(ARTIFACTS["eval"]), canonical, field, n, distance=distance, size=size, fovy_deg=fovy)
        viewer = write_viewer(
            uri(ARTIFACTS["viewer"]),
            canonical,
            field,
            n,
            distance=distance,
            fovy_deg=fovy,
            fps=config.export.fps,
            input_frames=frames,
            title=f"{item.id} · {out.rstrip('/').rsplit('/', 1)[-1]}",  # the item and its method folder
        )
        uris = {name: uri(path) for name, path in ARTIFACTS.items()}
        uris |= _animated_mesh(item, uri(ANIMATED_MESH), field, n, config.export.fps)
        return uris | {"eval_size": size, "viewer_bytes": viewer["bytes"], "viewer_gaussians": viewer["gaussians"]}

    return _run("render", out, config, item, body)


def _animated_mesh(item: Item, uri: str, field, n_frames: int, fps: float) -> dict:
    """``object/animated.glb`` when the 3D input is a mesh; for Gaussians, the reason there is none."""
    if not mesh_input(item.object):
        if storage.exists(uri):  # from an earlier run of this folder on a mesh input
            storage.remove(uri)
        return {"animated_mesh": None, "animated_mesh_note": GAUSSIANS_INPUT}
    written = write_animated_glb(uri, item.object, field, n_frames, fps)
    return {"animated_mesh": uri, "animated_mesh_vertices": written["vertices"]}


def _ground_truth_size(folder: str | None) -> int | None:
    """The size of the ground-truth views, so that the eval renders match them (DESIGN.md §7)."""
    if folder is None:
        return None
    first = storage.join(folder, "eval_0")
    names = list_frames(first)
    return max(read_image(storage.join(first, names[0]))[0].shape[:2]) if names else None


def evaluate_stage(item: Item, out: str, config: RunConfig) -> dict:
    """The metrics of DESIGN.md §7 of the eval views against the dataset's ground truth (metrics.json)."""

    def body() -> dict:
        if item.eval is None:
            metrics = {"missing": {"all": "the item has no ground-truth views (manifest field 'eval')"}}
        else:
            cache = FeatureCache(gt_features_folder(out))  # shared by the item's methods
            metrics = evaluate_views(storage.join(out, ARTIFACTS["eval"]), item.eval, config.metrics, cache)
        storage.write_json(storage.join(out, "metrics.json"), metrics)
        return {k: v for k, v in metrics.items() if k not in ("views", "i3d")}

    return _run("evaluate", out, config, item, body)


__all__ = [
    "STAGES",
    "evaluate_stage",
    "find_distances",
    "optimize_stage",
    "render_stage",
    "search_stage",
    "stage_config_hash",
    "stage_records",
]
