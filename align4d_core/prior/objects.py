"""Procedural animated objects for training the learned prior, drawn at random from a seed.

The families are none of the sample's five (``align4d_core.sample.objects``): stacks of boxes,
snowmen of spheres, mushrooms, rings with satellites, caterpillar chains, tables, pillars and blob
clusters. Each draws its part sizes, colours (flat, striped, checkered or a gradient, on parts that
have their own hue) and a motion (a bend, a twist, a squash or a spin, at an amplitude of its own)
from one generator, so an object is a function of ``(seed, index)`` alone. Every object is centred
on its bounding box and scaled so that its farthest Gaussian centre lies at :data:`RADIUS`, in
every phase of its motion, the radius the sample's objects keep to: a render at distance ``d``
shows it at the size a sample object has at ``d``.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from align4d_core.sample.objects import (
    MAX_RADIUS,
    Part,
    axis_quat,
    box,
    cylinder_y,
    quat_multiply,
    rotate_about,
    sphere,
    surface_gaussians,
    torus_z,
)
from align4d_core.scene.gaussians import Gaussians

RADIUS = MAX_RADIUS
"""Every training object's farthest Gaussian centre from the origin, in every phase (the sample's)."""

FAMILIES = ("stack", "snowman", "mushroom", "ring", "chain", "table", "pillar", "blobs")
MOTIONS = ("bend", "twist", "squash", "spin")


@dataclass(frozen=True)
class TrainingObject:
    """One drawn object: its family, its Gaussians at rest and how it moves."""

    family: str
    motion: str
    amplitude: float
    gaussians: Gaussians  # at rest, normalised to RADIUS over its motion

    def at(self, phase: float) -> Gaussians:
        """The object at ``phase`` in [0, 1) of its motion cycle."""
        return _move(self.gaussians, self.motion, self.amplitude, phase)


# --- colours ---------------------------------------------------------------------------------


def _hue(rng: np.random.Generator, saturation: tuple[float, float] = (0.45, 0.9)) -> np.ndarray:
    h = rng.uniform(0.0, 1.0)
    s = rng.uniform(*saturation)
    v = rng.uniform(0.45, 0.95)
    return np.asarray(colorsys.hsv_to_rgb(h, s, v))


def _painter(rng: np.random.Generator, names: list[str]) -> Callable:
    """A colour function ``(part, points, normals, uv) -> rgb`` with a random look per part."""
    looks = {}
    for name in names:
        kind = rng.choice(["flat", "stripes", "checker", "gradient"])
        looks[name] = (kind, _hue(rng), _hue(rng), int(rng.integers(0, 3)), float(rng.uniform(4.0, 12.0)))

    def colour(name: str, points: np.ndarray, normals: np.ndarray, uv: np.ndarray) -> np.ndarray:
        kind, a, b, axis, frequency = looks[name]
        if kind == "flat":
            w = np.zeros(len(points))
        elif kind == "stripes":
            w = 0.5 + 0.5 * np.cos(frequency * math.pi * points[:, axis])
        elif kind == "checker":
            cells = np.floor(frequency * points[:, (axis + 1) % 3]) + np.floor(frequency * points[:, axis])
            w = (cells % 2).astype(float)
        else:
            span = np.ptp(points[:, axis]) or 1.0
            w = (points[:, axis] - points[:, axis].min()) / span
        return a[None] * (1.0 - w[:, None]) + b[None] * w[:, None]

    return colour


# --- the families ------------------------------------------------------------------------------


def _stack(rng: np.random.Generator) -> list[Part]:
    parts, y = [], -0.4
    for k in range(int(rng.integers(2, 5))):
        half = rng.uniform([0.08, 0.05, 0.08], [0.3, 0.14, 0.3])
        centre = (rng.uniform(-0.06, 0.06), y + half[1], rng.uniform(-0.06, 0.06))
        parts.append(box(f"box{k}", centre, half))
        y += 2 * half[1]
    return parts


def _snowman(rng: np.random.Generator) -> list[Part]:
    parts, y, radius = [], -0.4, rng.uniform(0.18, 0.3)
    for k in range(int(rng.integers(2, 4))):
        parts.append(sphere(f"ball{k}", (0.0, y + radius, 0.0), radius))
        y += 1.7 * radius
        radius *= rng.uniform(0.55, 0.85)
    return parts


def _mushroom(rng: np.random.Generator) -> list[Part]:
    stem = rng.uniform(0.05, 0.12)
    height = rng.uniform(0.3, 0.6)
    cap = rng.uniform(0.18, 0.35)
    return [cylinder_y("stem", (0.0, 0.0), -0.4, -0.4 + height, stem), sphere("cap", (0.0, -0.4 + height, 0.0), cap)]


def _ring(rng: np.random.Generator) -> list[Part]:
    major = rng.uniform(0.2, 0.32)
    parts = [torus_z("ring", (0.0, 0.0, 0.0), major, rng.uniform(0.04, 0.1))]
    for k in range(int(rng.integers(1, 4))):
        angle = rng.uniform(0, 2 * math.pi)
        parts.append(
            sphere(
                f"moon{k}",
                (major * math.cos(angle), major * math.sin(angle), rng.uniform(-0.2, 0.2)),
                rng.uniform(0.05, 0.1),
            )
        )
    return parts


def _chain(rng: np.random.Generator) -> list[Part]:
    count = int(rng.integers(3, 6))
    phase, amplitude = rng.uniform(0, 2 * math.pi), rng.uniform(0.05, 0.2)
    parts = []
    for k in range(count):
        x = -0.35 + 0.7 * k / (count - 1)
        parts.append(
            sphere(
                f"bead{k}", (x, amplitude * math.sin(phase + 3 * x), 0.05 * math.cos(5 * x)), rng.uniform(0.08, 0.14)
            )
        )
    return parts


def _table(rng: np.random.Generator) -> list[Part]:
    half = rng.uniform([0.2, 0.03, 0.15], [0.35, 0.06, 0.3])
    top = rng.uniform(-0.05, 0.15)
    legs = [
        cylinder_y(f"leg{k}", (sx * 0.8 * half[0], sz * 0.8 * half[2]), -0.35, top, rng.uniform(0.02, 0.04))
        for k, (sx, sz) in enumerate([(-1, -1), (-1, 1), (1, -1), (1, 1)])
    ]
    return [box("top", (0.0, top + half[1], 0.0), half), *legs]


def _pillar(rng: np.random.Generator) -> list[Part]:
    radius = rng.uniform(0.08, 0.16)
    cap = rng.uniform([radius + 0.03, 0.03, radius + 0.03], [radius + 0.1, 0.06, radius + 0.1])
    return [
        cylinder_y("shaft", (0.0, 0.0), -0.35, 0.35, radius),
        box("base", (0.0, -0.35 - cap[1], 0.0), cap),
        box("capital", (0.0, 0.35 + cap[1], 0.0), cap),
    ]


def _blobs(rng: np.random.Generator) -> list[Part]:
    return [
        sphere(f"blob{k}", rng.uniform(-0.2, 0.2, size=3), rng.uniform(0.08, 0.2))
        for k in range(int(rng.integers(3, 7)))
    ]


_BUILDERS = {
    "stack": _stack,
    "snowman": _snowman,
    "mushroom": _mushroom,
    "ring": _ring,
    "chain": _chain,
    "table": _table,
    "pillar": _pillar,
    "blobs": _blobs,
}


# --- motions -------------------------------------------------------------------------------------


def _move(g: Gaussians, motion: str, amplitude: float, phase: float) -> Gaussians:
    """The object moved to ``phase``: a bend about z through the base, a twist about y growing with
    height, a squash along y (volume kept), or a rigid spin about y; angles in radians."""
    s = math.sin(2.0 * math.pi * phase)
    means, quats, log_scales = g.means, g.quats, g.log_scales
    height = (means[:, 1] - means[:, 1].min()) / max(float(means[:, 1].max() - means[:, 1].min()), 1e-6)
    if motion in ("bend", "twist", "spin"):
        weight = height if motion != "spin" else torch.ones_like(height)
        angle = amplitude * s * weight
        axis = 2 if motion == "bend" else 1
        pivot = torch.tensor([0.0, float(means[:, 1].min()), 0.0], dtype=means.dtype)
        means = rotate_about(means, angle, axis, pivot)
        quats = quat_multiply(axis_quat(angle, axis), quats)
    elif motion == "squash":
        factor = 1.0 + amplitude * s
        scale = torch.tensor([factor**-0.5, factor, factor**-0.5], dtype=means.dtype)
        means = means * scale
        log_scales = log_scales + torch.log(scale)
    return Gaussians(means=means, log_scales=log_scales, quats=quats, opacity_logits=g.opacity_logits, sh0=g.sh0)


def _normalised(g: Gaussians, motion: str, amplitude: float) -> Gaussians:
    """Centred on its bounding box and scaled so that no phase puts a centre beyond RADIUS."""
    centre = 0.5 * (g.means.max(dim=0).values + g.means.min(dim=0).values)
    g = Gaussians(
        means=g.means - centre, log_scales=g.log_scales, quats=g.quats, opacity_logits=g.opacity_logits, sh0=g.sh0
    )
    reach = max(float(_move(g, motion, amplitude, p).means.norm(dim=-1).max()) for p in np.linspace(0, 1, 9))
    k = RADIUS / reach
    return Gaussians(
        means=g.means * k,
        log_scales=g.log_scales + math.log(k),
        quats=g.quats,
        opacity_logits=g.opacity_logits,
        sh0=g.sh0,
    )


def draw_object(rng: np.random.Generator, n: int, families: tuple[str, ...] = FAMILIES) -> TrainingObject:
    """One object of a random family, with ``n`` Gaussians, a random look and a random motion."""
    family = str(rng.choice(families))
    parts = _BUILDERS[family](rng)
    colour = _painter(rng, [p.name for p in parts])
    gaussians = surface_gaussians(parts, colour, n, rng)
    motion = str(rng.choice(MOTIONS))
    amplitude = float(rng.uniform(0.3, 0.9)) if motion != "squash" else float(rng.uniform(0.1, 0.3))
    return TrainingObject(family, motion, amplitude, _normalised(gaussians, motion, amplitude))
