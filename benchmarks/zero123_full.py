"""The paper setting's cost at real size: a full-size Zero123-XL with random weights.

    python benchmarks/optimize.py --zero123-size full [--item arm_swing] [--probe-distances 4]
                                                      [--step-frames 1] [--schedule auto|yes|no] [--device cuda]

Zero123-XL built from its published configs (``guidance/zero123_xl.py``; no weights exist on these
machines, so the outputs are meaningless but every multiply is real) guides the optimizer on one
sample item at the paper's settings (Section IV-A; DreamGaussian4D's schedule: 500 steps, every
frame each step, N = 4 unknown views per frame, renders 128 → 256 → 512 px). It prints:

* one SDS step of MGJA (L_mot + L_geo + KSVA, forward and backward) at each render size; with
  ``--step-frames K`` (default on CPU: 1, as a whole step of 64 views at 256 px needs far more than
  24 GB in float32) on K frames, and the whole step extrapolated (×16/K, said so);
* the MAOD probe (eq. 5): 61 distances × 4 azimuths × 3 timesteps; with ``--probe-distances K``
  only K distances are timed and the whole sweep is extrapolated (×61/K, said so);
* with ``--schedule yes`` (default on CUDA) the whole 500-step run;

each with peak memory (CUDA's peak allocation, else the process's peak RSS), beside Table V's
V100 figures (MAOD 0.20 min, 4D generation 25 min, 19.4 GB).
"""

from __future__ import annotations

import resource
import statistics
import time
from dataclasses import replace

import torch

from align4d_core.config import GuidanceConfig, RunConfig, SampleConfig
from align4d_core.guidance.zero123 import Zero123Guidance
from align4d_core.guidance.zero123_xl import random_parts
from align4d_core.io import storage
from align4d_core.io.dataset import load_item
from align4d_core.io.manifest import read_manifest
from align4d_core.method.oda import candidate_distances, probe_curve
from align4d_core.method.optimize import Pair, _Run, _train_step, optimize
from align4d_core.sample import write_sample

PAPER = {"maod_min": 0.20, "generation_min": 25.0, "memory_gb": 19.4}  # Table V, one V100


def peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load_pair(work: str, item_id: str, device: torch.device) -> tuple[Pair, float]:
    root = storage.join(work, "sample")
    if not storage.exists(storage.join(root, "manifest.jsonl")):
        write_sample(root, SampleConfig(items=(item_id,)))
    item = next(i for i in read_manifest(root) if i.id == item_id)
    loaded = load_item(root, item)
    truth = storage.read_json(storage.join(root, "items", item_id, "truth.json"))
    pair = Pair(
        loaded.video.frames.to(device),
        None if loaded.masks is None else loaded.masks.to(device),
        loaded.gaussians.to(device),
        RunConfig().fovy_deg,
    )
    return pair, float(truth["distance"])


def run(
    work: str,
    item_id: str,
    device: torch.device,
    probe_distances: int | None,
    schedule: bool,
    step_frames: int | None = None,
) -> None:
    started = time.perf_counter()
    parts = random_parts()
    params = {
        name: sum(p.numel() for p in getattr(parts, name).parameters()) / 1e6
        for name in ("unet", "vae", "image_encoder", "projection")
    }
    config = RunConfig(guidance=GuidanceConfig(backend="zero123", model=parts.folder))
    guidance = Zero123Guidance(config.guidance, device, parts)
    del parts
    print(
        f"full-size random Zero123-XL on {device} ({guidance.dtype}): "
        + ", ".join(f"{k} {v:.1f}M" for k, v in params.items())
        + f" parameters; built in {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    pair, distance = load_pair(work, item_id, device)
    frames = pair.frames
    print(
        f"item {item_id}: {frames.shape[0]} frames of {frames.shape[1]} px, {len(pair.gaussians)} Gaussians, "
        f"distance {distance}; paper schedule: {config.optimize.steps} steps, every frame, "
        f"{config.mgja.views} views per frame, renders {[s for _, s in config.optimize.resolution_schedule]} px",
        flush=True,
    )

    guidance.set_frames(frames)
    steps = config.optimize.steps
    n_frames = frames.shape[0]
    measured = replace(config, optimize=replace(config.optimize, frames_per_step=step_frames))
    state = _Run(pair, measured, guidance)
    share = n_frames / min(step_frames or n_frames, n_frames)
    if share > 1:
        print(
            f"the SDS steps below use {step_frames} of the {n_frames} frames per step (a whole step's activations "
            f"do not fit this machine's memory in float32): times ×{share:.0f} are given as the whole step's, "
            "extrapolated",
            flush=True,
        )
    for step in (1, int(0.45 * steps), int(0.9 * steps)):  # one step at each render size: 128, 256, 512
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        synchronize(device)
        begin = time.perf_counter()
        record = _train_step(state, step, frames, pair.masks, distance, 0.8 * distance)
        synchronize(device)
        seconds = time.perf_counter() - begin
        size = next(s for until, s in config.optimize.resolution_schedule if step / steps <= until)
        views = min(step_frames or n_frames, n_frames) * config.mgja.views
        whole = (
            f"; a whole step of {n_frames * config.mgja.views} views ≈ {seconds * share:.1f} s (extrapolated)"
            if share > 1
            else ""
        )
        print(
            f"one SDS step (step {step}, renders {size} px, {views} views; "
            f"L_mot {record.get('mot', float('nan')):.3g}, L_geo {record.get('geo', float('nan')):.3g}): "
            f"{seconds:.2f} s, peak {peak_memory_gib(device):.2f} GiB{whole}",
            flush=True,
        )

    distances = candidate_distances(config.search)
    timed = (
        distances
        if probe_distances is None
        else distances[:: max(1, len(distances) // probe_distances)][:probe_distances]
    )
    guidance.set_frames(frames[:1])
    synchronize(device)
    begin = time.perf_counter()
    values = probe_curve(guidance, pair.gaussians, timed, config.search, pair.fovy_deg, vaod=distance)
    synchronize(device)
    seconds = time.perf_counter() - begin
    whole = seconds * len(distances) / len(timed)
    how = (
        "measured"
        if len(timed) == len(distances)
        else f"measured on {len(timed)}, extrapolated ×{len(distances) / len(timed):.1f}"
    )
    print(
        f"MAOD probe: {len(timed)} distances × {len(guidance.probe_azimuths)} azimuths × "
        f"{len(config.search.timesteps)} timesteps in {seconds:.1f} s; whole sweep of {len(distances)}: "
        f"{whole / 60:.2f} min ({how}); paper (V100): {PAPER['maod_min']} min; finite: "
        f"{bool(torch.isfinite(values).all())}",
        flush=True,
    )

    if not schedule:
        print("paper schedule: not run here (use --schedule yes; on this CPU it would take hours)")
        return
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    synchronize(device)
    begin = time.perf_counter()
    seconds_per_step = []

    def progress(step: int, total: int, record: dict) -> None:
        seconds_per_step.append(time.perf_counter())
        if step % 50 == 0:
            print(f"  step {step}/{total}: {time.perf_counter() - begin:.0f} s", flush=True)

    optimize(pair, distance, 0.8 * distance, replace(config), guidance, progress=progress)
    synchronize(device)
    total = time.perf_counter() - begin
    gaps = [b - a for a, b in zip(seconds_per_step, seconds_per_step[1:])]
    print(
        f"paper schedule ({steps} steps): {total / 60:.2f} min (median step {statistics.median(gaps):.2f} s), "
        f"peak {peak_memory_gib(device):.2f} GiB; paper (V100): {PAPER['generation_min']} min, "
        f"{PAPER['memory_gb']} GB; ratio {total / 60 / PAPER['generation_min']:.2f}",
        flush=True,
    )
