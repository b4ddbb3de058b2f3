"""A run folder written by hand, file by file, as the pipeline writes it: the input of the table tests.

Two items × three methods (``align4d``, ``no-ao``, ``no-oda``), one of them failed, with stage markers
(written by the real ``write_done``), ``search.json``, ``losses.json`` (160 steps: the CPU profile),
``metrics.json``, the two videos (real H.264 mp4s), the per-item plots and ``row.json`` (built by the
real ``completed_row`` / ``failed_row``). The numbers are chosen so that every mean in the tables can
be computed by hand in the tests: see VALUES.
"""

from __future__ import annotations

import torch

from align4d_core.io import storage
from align4d_core.io.markers import write_done
from align4d_core.io.media import write_video
from align4d_core.method.oda import SearchResult
from align4d_core.pipeline.plots import plot_losses, plot_search
from align4d_core.reporting.rows import completed_row, failed_row

ITEMS = ("a_item", "b-item")
METHODS = ("align4d", "no-ao", "no-oda")
STEPS = 160
GIB = 2**30

# (item, method) -> psnr, ssim, lpips (None: missing)
VALUES = {
    ("a_item", "align4d"): (20.0, 0.80, 0.20),
    ("b-item", "align4d"): (22.0, 0.90, None),
    ("a_item", "no-ao"): (19.0, 0.70, None),
    ("b-item", "no-ao"): (21.0, 0.75, None),
    ("a_item", "no-oda"): (15.0, 0.60, None),
}
FAILED = ("b-item", "no-oda")
FAILED_MESSAGE = "bad | value <script>alert('x')</script> in a_b & c"
REASONS = {
    "lpips": "no VGG16 weights: set metrics.lpips_weights",
    "clip": "no CLIP weights (metrics.clip_model)",
    "clip_f": "no CLIP weights (metrics.clip_model)",
    "fvd": "no I3D weights (metrics.i3d_weights)",
}
# stage -> (seconds, peak GiB) for every completed (item, method); item b doubles the seconds
STAGE_COST = {"search": (2.0, 1.0), "optimize": (100.0, 3.0), "render": (10.0, 3.0), "evaluate": (5.0, 3.5)}
SEARCH_SECONDS = {"vaod": 0.5, "maod": 1.5}
VAOD, MAOD = 1.50001, 1.20001


def loss_at(method: str, item: str, step: int) -> float:
    """The hand-made loss curve: AO falls faster than JO; item b's is twice item a's."""
    scale = 2.0 if item == "b-item" else 1.0
    return scale * (100.0 / step + 1.0 if method == "align4d" else 200.0 / step + 2.0)


def _search(method: str) -> SearchResult:
    if method == "no-oda":
        return SearchResult(1.5, 1.5, [], [], None, None, "oda off: fixed distance 1.5 (DreamGaussian4D)")
    distances = [round(0.00001 + 0.05 * k, 10) for k in range(61)]
    mse = [(d - VAOD) ** 2 for d in distances]
    sds = [abs(d - MAOD) + 0.1 * d for d in distances]
    return SearchResult(
        VAOD,
        MAOD,
        distances,
        mse,
        None,
        sds,
        "lowest local minimum of the probe strictly left of VAOD",
        dict(SEARCH_SECONDS),
    )


def _video(uri: str, frames: int, height: int, width: int, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    write_video(uri, torch.rand(frames, height, width, 3, generator=generator), fps=8)


def write_item(root: str, item: str, method: str) -> dict:
    """One completed (item, method) folder, as the stages write it; returns its row."""
    out = storage.join(root, "items", item, method)
    scale = 2.0 if item == "b-item" else 1.0
    found = _search(method)
    storage.write_json(storage.join(out, "search.json"), {**found.to_json(), "guidance": "zero123"})
    if found.distances:
        plot_search(found, storage.join(out, "plots", "search.png"))
    history = [{"step": s, "phase": "joint", "loss": loss_at(method, item, s)} for s in range(1, STEPS + 1)]
    storage.write_json(storage.join(out, "losses.json"), {"history": history, "densify": []})
    plot_losses({"loss": history}, storage.join(out, "plots", "losses.png"))
    _video(storage.join(out, "videos", "turntable.mp4"), 6, 32, 32, seed=len(item) + len(method))
    _video(storage.join(out, "videos", "front_vs_input.mp4"), 6, 32, 64, seed=7)
    psnr, ssim, lpips = VALUES[(item, method)]
    missing = {k: v for k, v in REASONS.items() if k != "lpips" or lpips is None}
    metrics = {
        "psnr": psnr,
        "ssim": ssim,
        "lpips": lpips,
        "clip": None,
        "clip_f": None,
        "fvd": None,
        "missing": missing,
    }
    storage.write_json(storage.join(out, "metrics.json"), metrics)
    for stage, (seconds, peak) in STAGE_COST.items():
        extra = {"vaod": found.vaod, "maod": found.maod, "seconds": found.seconds} if stage == "search" else {}
        write_done(
            storage.join(out, "stages", stage),
            config_hash="fixture",
            input_hashes={},
            timings={stage: seconds * scale},
            peak_memory_bytes=int(peak * GIB),
            extra=extra,
        )
    search_result = {"vaod": found.vaod, "maod": found.maod, "maod_rule": found.maod_rule, "seconds": found.seconds}
    row = completed_row(
        item, method, out, search_result, {"gaussians": 1000, "final_loss": history[-1]["loss"]}, metrics
    )
    storage.write_json(storage.join(out, "row.json"), row)
    return row


def write_run(root: str) -> list[dict]:
    """The whole run folder; returns its rows in the order the flow would pass them."""
    storage.write_json(
        storage.join(root, "run.json"),
        {
            "run_id": "fixture",
            "dataset": "memory://nowhere",
            "methods": list(METHODS),
            "items": list(ITEMS),
            "started_at": "2026-01-01T00:00:00+00:00",
            "code_version": "test",
        },
    )
    rows = []
    for item in ITEMS:
        for method in METHODS:
            if (item, method) == FAILED:
                try:
                    raise RuntimeError(FAILED_MESSAGE)
                except RuntimeError as error:
                    row = failed_row(item, method, error)
                storage.write_json(storage.join(root, "items", item, method, "row.json"), row)
            else:
                row = write_item(root, item, method)
            rows.append(row)
    return rows
