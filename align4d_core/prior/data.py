"""The prior's training data: (condition view, target view, relative pose) of procedural objects.

``align4d prior data --out URI`` draws objects (:mod:`.objects`), renders each at a random phase of
its motion from a condition view and a target view with our renderer (``backend="cpu"``: the bytes
do not depend on the machine's GPU), on white at fovy 49.1°, and writes them to any fsspec URI::

    <out>/shard-00000.npz ...  condition, target (N, S, S, 3) uint8; delta (N, 3) float32:
                               Δelevation, Δazimuth (degrees), Δradius, target minus condition,
                               in align4d's camera convention (DESIGN.md §4); object (N,) int32
    <out>/manifest.json        written last: the config, the shards, the counts per family

Views: the condition's elevation in ``condition_elevation`` (the video frames and the 3D input's
front views a run conditions on are near elevation 0), the target's in ``target_elevation`` (MGJA's
random views), azimuths anywhere; both distances drawn from ``[d_prior − band, d_prior + band]``
independently. A share ``same_view`` of the pairs has the target at the condition's view and
distance (Δpose 0, eq. 8's case). Everything follows from ``seed``: object ``i`` from
``(seed, split, i)``, so a larger set made elsewhere (a GPU fleet) contains the smaller one.
A shard already written with the same config is kept, so an interrupted run resumes.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict

import numpy as np
import torch

from align4d_core.config import PriorDataConfig
from align4d_core.errors import InputError
from align4d_core.io import storage
from align4d_core.io.hashing import hash_json
from align4d_core.prior.objects import draw_object
from align4d_core.scene.cameras import orbit_cameras
from align4d_core.scene.render import render

MANIFEST = "manifest.json"
SPLITS = {"train": 0, "heldout": 1}

ProgressCallback = Callable[[int, int], None]
"""``progress(objects_done, objects_total)``."""


def object_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), SPLITS[split], int(index)])


def draw_views(rng: np.random.Generator, config: PriorDataConfig) -> dict[str, np.ndarray]:
    """Condition and target views of ``config.pairs_per_object`` pairs (degrees, distances)."""
    n = config.pairs_per_object
    low, high = config.d_prior - config.band, config.d_prior + config.band
    views = {
        "c_elevation": rng.uniform(*config.condition_elevation, size=n),
        "c_azimuth": rng.uniform(-180.0, 180.0, size=n),
        "c_radius": rng.uniform(low, high, size=n),
        "t_elevation": rng.uniform(*config.target_elevation, size=n),
        "t_azimuth": rng.uniform(-180.0, 180.0, size=n),
        "t_radius": rng.uniform(low, high, size=n),
        "phase": rng.uniform(0.0, 1.0, size=n),
    }
    same = rng.uniform(size=n) < config.same_view
    for key in ("elevation", "azimuth", "radius"):
        views[f"t_{key}"] = np.where(same, views[f"c_{key}"], views[f"t_{key}"])
    return views


def render_object_pairs(index: int, config: PriorDataConfig, split: str = "train") -> dict[str, np.ndarray]:
    """The pairs of object ``index``: uint8 images, the relative poses and the phases."""
    rng = object_rng(config.seed, split, index)
    obj = draw_object(rng, config.gaussians)
    views = draw_views(rng, config)
    conditions, targets = [], []
    with torch.no_grad():
        for j in range(config.pairs_per_object):
            g = obj.at(float(views["phase"][j]))
            cams = orbit_cameras(
                [views["c_elevation"][j], views["t_elevation"][j]],
                [views["c_azimuth"][j], views["t_azimuth"][j]],
                [views["c_radius"][j], views["t_radius"][j]],
                width=config.size,
                fovy_deg=config.fovy_deg,
            )
            rgb = render(g, cams, backend="cpu").rgb
            pixels = (rgb.clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()
            conditions.append(pixels[0])
            targets.append(pixels[1])
    delta_azimuth = (views["t_azimuth"] - views["c_azimuth"] + 180.0) % 360.0 - 180.0
    delta = np.stack(
        [views["t_elevation"] - views["c_elevation"], delta_azimuth, views["t_radius"] - views["c_radius"]], axis=1
    ).astype(np.float32)
    return {
        "condition": np.stack(conditions),
        "target": np.stack(targets),
        "delta": delta,
        "object": np.full(config.pairs_per_object, index, dtype=np.int32),
        "family": np.array([obj.family] * config.pairs_per_object),
    }


def check_writable(out: str) -> None:
    """Fail before any work when ``out`` cannot be written (nothing is left behind)."""
    probe = storage.join(out, ".align4d-write-check")
    try:
        storage.write_text(probe, "ok")
        storage.remove(probe)
    except (OSError, InputError) as error:
        raise InputError(f"cannot write here: {error}", uri=out) from None


def write_prior_data(
    out: str, config: PriorDataConfig, split: str = "train", progress: ProgressCallback | None = None
) -> dict:
    """Render ``config.objects`` objects' pairs into shards under ``out``; returns the manifest."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    check_writable(out)
    key = hash_json({"config": asdict(config), "split": split})
    shards, families, done = [], Counter(), 0
    for first in range(0, config.objects, config.shard_objects):
        indices = range(first, min(first + config.shard_objects, config.objects))
        name = f"shard-{first // config.shard_objects:05d}.npz"
        uri = storage.join(out, name)
        meta_uri = uri + ".json"
        if storage.exists(meta_uri) and storage.read_json(meta_uri).get("key") == key and storage.exists(uri):
            meta = storage.read_json(meta_uri)
        else:
            parts = [render_object_pairs(i, config, split) for i in indices]
            arrays = {k: np.concatenate([p[k] for p in parts]) for k in ("condition", "target", "delta", "object")}
            buffer = io.BytesIO()
            np.savez_compressed(buffer, **arrays)
            storage.write_bytes(uri, buffer.getvalue())
            meta = {
                "key": key,
                "pairs": int(len(arrays["delta"])),
                "objects": list(indices),
                "families": dict(Counter(str(p["family"][0]) for p in parts)),
            }
            storage.write_json(meta_uri, meta)
        shards.append({"name": name, "pairs": meta["pairs"]})
        families.update(meta["families"])
        done += len(indices)
        if progress is not None:
            progress(done, config.objects)
    manifest = {
        "format": "align4d-prior-data/1",
        "split": split,
        "config": asdict(config),
        "key": key,
        "shards": shards,
        "pairs": sum(s["pairs"] for s in shards),
        "families": dict(families),
    }
    storage.write_json(storage.join(out, MANIFEST), manifest)
    return manifest


def read_prior_data(uri: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """The manifest and every shard's arrays, concatenated, as tensors (uint8 images)."""
    manifest_uri = storage.join(uri, MANIFEST)
    if not storage.exists(manifest_uri):
        raise InputError(f"no {MANIFEST}: not a prior data folder (make one with `align4d prior data`)", uri=uri)
    manifest = storage.read_json(manifest_uri)
    arrays: dict[str, list] = {"condition": [], "target": [], "delta": [], "object": []}
    for shard in manifest["shards"]:
        try:
            with np.load(io.BytesIO(storage.read_bytes(storage.join(uri, shard["name"])))) as data:
                for key in arrays:
                    arrays[key].append(data[key])
        except (OSError, ValueError, KeyError) as error:
            raise InputError(f"shard {shard['name']} cannot be read: {error}", uri=uri) from None
    return manifest, {k: torch.from_numpy(np.concatenate(v)) for k, v in arrays.items()}


def summary(manifest: dict) -> str:
    return json.dumps({k: manifest[k] for k in ("split", "pairs", "families")})
