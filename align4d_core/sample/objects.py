"""The procedural animated objects of the bundled X4D sample: shapes, colours and motions.

Each :class:`SampleObject` writes its canonical state (frame 0) as a 3D file, the way a user's
quadruplet would give it (a 3DGS ``.ply``, a vertex-coloured ``.glb`` or a textured ``.obj``), and
animates the Gaussians read back from that file: ``deform(canonical, phases)`` returns one deformed
state per frame, and the state at phase 0 is the canonical one, exactly. Every shape and motion
parameter lives in the object's ``shape_params`` / ``motion_params`` dicts, which the builders and
the motions read and ``truth.json`` records, so the written truth cannot drift from what was drawn.

The five objects cover the motion types a 4D method has to follow (id: 3D input, video; motion;
true distance):

* ``twist_column``: striped square column, ``.ply``, PNG frames; twists about y with the angle
  growing with height (base fixed), up to 120° at the top and back; 1.15.
* ``hopping_torus``: two-tone torus with a dark band, ``.ply``, mp4; rigid: hops along a small arc
  while spinning once about y; 1.55.
* ``arm_swing``: blocky figure, ``.ply``, PNG frames; articulated: the right arm swings out to 80°
  about the shoulder, in the image plane of the front view, and back; 1.90.
* ``waving_flag``: flag on a pole, textured ``.obj`` (+ ``.mtl``, ``flag.png``), PNG frames;
  non-rigid: a sine wave travels along the cloth, growing from the pole; 2.25.
* ``pulsing_blob``: icosphere, vertex-coloured ``.glb``, mp4; non-rigid: a radial wave travels from
  top to bottom; 2.60.

The phase of frame ``t`` of ``T`` is ``t / T``: every motion is periodic over the video (one cycle),
so that a longer or shorter video samples the same motion more or less densely. Non-periodic
amplitudes follow ``sin²(π·phase)`` (rest at frame 0, largest mid-video), so no frame after the
first returns to rest. All objects stay inside a sphere of radius :data:`MAX_RADIUS` around the
origin through every frame, so they stay in view from distance 1.1 at fovy 49.1°.

Procedural (``.ply``) objects are surface samples like :func:`~align4d_core.io.mesh.gaussians_from_mesh`
makes from a mesh: flat discs lying in the surface, spaced ``sqrt(area / n)`` apart, with colours
that are smooth functions of the surface coordinates (gradients, stripes, flat patches), so that
the renders are recognisable and their PNGs compress well.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import trimesh
from PIL import Image, ImageDraw
from torch import Tensor

from align4d_core.io import storage
from align4d_core.io.mesh import DEFAULT_OPACITY, SPACING_SCALE, THICKNESS, quats_z_to
from align4d_core.io.ply import write_gaussians_ply
from align4d_core.scene.gaussians import Gaussians, inverse_sigmoid, rgb_to_sh0

__all__ = [
    "MAX_RADIUS",
    "SAMPLE_OBJECTS",
    "Part",
    "SampleObject",
    "axis_quat",
    "box",
    "cylinder_y",
    "frame_phases",
    "object_by_id",
    "quat_multiply",
    "rotate_about",
    "sphere",
    "surface_gaussians",
    "torus_z",
]

MAX_RADIUS = 0.45
"""Every sample object, in every frame, lies inside this sphere around the origin."""

Params = dict[str, Any]


@dataclass(frozen=True)
class SampleObject:
    """One procedural animated object of the sample, with its true camera distance."""

    id: str
    prompt: str
    distance: float  # true object distance of every view of this item
    video_format: str  # "mp4" or "png"
    shape: str
    shape_params: Params
    motion: str
    motion_params: Params
    write: Callable[[str, int, int, Params], str] = field(repr=False)  # (folder, n, seed, shape) -> name
    deform_fn: Callable[[Gaussians, Tensor, Params, Params], tuple[Tensor, Tensor]] = field(repr=False)

    @property
    def object_format(self) -> str:
        """``ply`` (3DGS), ``glb`` (vertex-coloured mesh) or ``obj`` (textured mesh)."""
        return str(self.shape_params["format"])

    def write_object(self, folder: str, n: int, seed: int) -> str:
        """Write the canonical 3D input into ``folder``; returns the main file's name."""
        return self.write(folder, n, seed, self.shape_params)

    def deform(self, canonical: Gaussians, phases: Tensor) -> Gaussians:
        """Batched Gaussians ``(T, N, ·)``: the canonical set moved to each phase in [0, 1).

        Means move and, where a part turns rigidly, the quaternions turn with it; scales, opacities
        and colours stay. Phase 0 gives the canonical Gaussians exactly.
        """
        if canonical.batched:
            raise ValueError("deform takes the unbatched canonical Gaussians (N, ...)")
        phases = torch.as_tensor(phases, dtype=canonical.dtype).reshape(-1)
        means, quats = self.deform_fn(canonical, phases, self.shape_params, self.motion_params)
        count = phases.shape[0]
        expand = lambda t: t.expand(count, *t.shape).contiguous()  # noqa: E731
        return Gaussians(
            means=means,
            log_scales=expand(canonical.log_scales),
            quats=quats,
            opacity_logits=expand(canonical.opacity_logits),
            sh0=expand(canonical.sh0),
        )


def frame_phases(frames: int) -> Tensor:
    """Phase ``t / T`` of each frame: one motion cycle over the video, frame 0 at phase 0."""
    return torch.arange(frames, dtype=torch.float64) / frames


# --- rotations ---------------------------------------------------------------------------------


def quat_multiply(a: Tensor, b: Tensor) -> Tensor:
    """Hamilton product ``a ⊗ b`` of wxyz quaternions (broadcasting): rotate by b, then by a."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        dim=-1,
    )


def axis_quat(angle: Tensor, axis: int) -> Tensor:
    """wxyz quaternions of rotations by ``angle`` (radians, any shape) about the x, y or z axis."""
    half = 0.5 * angle
    parts = [torch.cos(half), torch.zeros_like(half), torch.zeros_like(half), torch.zeros_like(half)]
    parts[1 + axis] = torch.sin(half)
    return torch.stack(parts, dim=-1)


def rotate_about(points: Tensor, angle: Tensor, axis: int, pivot: Tensor) -> Tensor:
    """Points rotated by ``angle`` (broadcasting with points[..., 0]) about an axis through pivot.

    Written as ``p + (R - I)(p - pivot)`` so that a zero angle returns the points bit for bit.
    """
    a, b = [(1, 2), (2, 0), (0, 1)][axis]  # right-handed: rotation about x takes y toward z, ...
    rel = points - pivot
    c1, s = torch.cos(angle) - 1.0, torch.sin(angle)
    out = points.clone()
    out[..., a] = points[..., a] + (c1 * rel[..., a] - s * rel[..., b])
    out[..., b] = points[..., b] + (s * rel[..., a] + c1 * rel[..., b])
    return out


def _sin2(phases: Tensor) -> Tensor:
    """sin²(π·phase): 0 at phase 0, peaks at 0.5, back to 0 at 1 (a smooth periodic envelope)."""
    return torch.sin(math.pi * phases) ** 2


# --- surface sampling for the procedural (.ply) objects ------------------------------------------


@dataclass
class Part:
    """Area-uniform surface samples of one primitive: points, unit normals, surface coordinates."""

    name: str
    area: float
    sample: Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray, np.ndarray]]


def box(name: str, centre, half) -> Part:
    centre, half = np.asarray(centre, float), np.asarray(half, float)
    axes = [(a, s) for a in range(3) for s in (-1.0, 1.0)]
    areas = np.array([4.0 * np.prod(np.delete(half, a)) for a, _ in axes])

    def sample(rng: np.random.Generator, m: int):
        face = rng.choice(len(axes), size=m, p=areas / areas.sum())
        uv = rng.uniform(-1.0, 1.0, size=(m, 2))
        points, normals = np.zeros((m, 3)), np.zeros((m, 3))
        for index, (a, s) in enumerate(axes):
            pick = face == index
            others = [i for i in range(3) if i != a]
            points[pick, a] = s * half[a]
            points[pick, others[0]] = uv[pick, 0] * half[others[0]]
            points[pick, others[1]] = uv[pick, 1] * half[others[1]]
            normals[pick, a] = s
        return points + centre, normals, face[:, None].astype(float)

    return Part(name, float(areas.sum()), sample)


def sphere(name: str, centre, radius: float) -> Part:
    centre = np.asarray(centre, float)

    def sample(rng: np.random.Generator, m: int):
        normals = rng.normal(size=(m, 3))
        normals /= np.linalg.norm(normals, axis=1, keepdims=True)
        return centre + radius * normals, normals, normals.copy()

    return Part(name, 4.0 * math.pi * radius**2, sample)


def cylinder_y(name: str, centre_xz, y0: float, y1: float, radius: float) -> Part:
    """The side of a vertical cylinder (open ends) from y0 to y1."""
    cx, cz = centre_xz

    def sample(rng: np.random.Generator, m: int):
        angle = rng.uniform(0.0, 2.0 * math.pi, size=m)
        y = rng.uniform(y0, y1, size=m)
        normals = np.stack([np.sin(angle), np.zeros(m), np.cos(angle)], axis=1)
        points = np.stack([cx + radius * normals[:, 0], y, cz + radius * normals[:, 2]], axis=1)
        return points, normals, np.stack([angle, (y - y0) / (y1 - y0)], axis=1)

    return Part(name, 2.0 * math.pi * radius * (y1 - y0), sample)


def torus_z(name: str, centre, major: float, minor: float) -> Part:
    """A torus around the z axis (its ring faces a camera on +z); coordinates (u, v) = angles."""
    centre = np.asarray(centre, float)

    def sample(rng: np.random.Generator, m: int):
        # area element ∝ (R + r cos v): rejection sampling, drawn in fixed-size rounds so that the
        # result depends only on the generator state
        kept_u, kept_v, count = [], [], 0
        while count < m:
            u = rng.uniform(0.0, 2.0 * math.pi, size=2 * m)
            v = rng.uniform(0.0, 2.0 * math.pi, size=2 * m)
            keep = rng.uniform(0.0, 1.0, size=2 * m) < (major + minor * np.cos(v)) / (major + minor)
            kept_u.append(u[keep])
            kept_v.append(v[keep])
            count += int(keep.sum())
        u, v = np.concatenate(kept_u)[:m], np.concatenate(kept_v)[:m]
        normals = np.stack([np.cos(v) * np.cos(u), np.cos(v) * np.sin(u), np.sin(v)], axis=1)
        ring = np.stack([np.cos(u), np.sin(u), np.zeros(m)], axis=1) * major
        return centre + ring + minor * normals, normals, np.stack([u, v], axis=1)

    return Part(name, 4.0 * math.pi**2 * major * minor, sample)


def _allocate(n: int, areas: list[float]) -> list[int]:
    """``n`` split over parts in proportion to area (largest remainder; every part gets ≥ 1)."""
    share = np.asarray(areas) / sum(areas) * n
    counts = np.maximum(np.floor(share).astype(int), 1)
    order = np.argsort(-(share - np.floor(share)), kind="stable")
    for index in order[: max(0, n - int(counts.sum()))]:
        counts[index] += 1
    while counts.sum() > n:  # only when n < number of parts forced some up to 1
        counts[int(np.argmax(counts))] -= 1
    return counts.tolist()


def surface_gaussians(
    parts: list[Part],
    colour: Callable[[str, np.ndarray, np.ndarray, np.ndarray], np.ndarray],
    n: int,
    rng: np.random.Generator,
) -> Gaussians:
    """``n`` flat surface Gaussians over ``parts``, coloured by ``colour(part, points, normals, uv)``."""
    points, normals, colours = [], [], []
    for part, count in zip(parts, _allocate(n, [p.area for p in parts])):
        p, nrm, uv = part.sample(rng, count)
        points.append(p)
        normals.append(nrm)
        colours.append(np.clip(colour(part.name, p, nrm, uv), 0.0, 1.0))
    points_a, normals_a = np.concatenate(points), np.concatenate(normals)
    sigma = SPACING_SCALE * math.sqrt(sum(p.area for p in parts) / n)
    f32 = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    return Gaussians(
        means=f32(points_a),
        log_scales=f32(np.broadcast_to(np.log([sigma, sigma, sigma * THICKNESS]), (n, 3))),
        quats=f32(quats_z_to(normals_a)),
        opacity_logits=inverse_sigmoid(torch.full((n,), DEFAULT_OPACITY, dtype=torch.float64)).float(),
        sh0=rgb_to_sh0(f32(np.concatenate(colours))),
    ).validate(what="sample object")


def _mix(a, b, w: np.ndarray) -> np.ndarray:
    """Per-point blend of two RGB colours, ``w`` in [0, 1] (shape (m,))."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return a[None] * (1.0 - w[:, None]) + b[None] * w[:, None]


def _write_ply(make: Callable[[int, np.random.Generator, Params], Gaussians]):
    def write(folder: str, n: int, seed: int, params: Params) -> str:
        write_gaussians_ply(storage.join(folder, "object.ply"), make(n, np.random.default_rng(seed), params))
        return "object.ply"

    return write


# --- twist_column ------------------------------------------------------------------------------

TWIST_SHAPE: Params = {
    "format": "ply",
    "half_width": 0.1,
    "y_min": -0.35,
    "y_max": 0.35,
    "stripes_per_face": 2,  # soft (raised-cosine) stripes: no ragged edges between surface samples
    "face_colours": [[0.10, 0.55, 0.60], [0.90, 0.45, 0.15], [0.35, 0.30, 0.75], [0.20, 0.60, 0.25]],
    "stripe_colour": [0.96, 0.93, 0.85],
    "cap_colour": [0.45, 0.45, 0.50],
}
TWIST_MOTION: Params = {"max_angle_deg": 120.0}


def _twist_gaussians(n: int, rng: np.random.Generator, p: Params) -> Gaussians:
    h = p["half_width"]
    y0, y1 = p["y_min"], p["y_max"]
    column = box("column", (0.0, 0.5 * (y0 + y1), 0.0), (h, 0.5 * (y1 - y0), h))
    # box faces: 0 -x, 1 +x, 2 -y, 3 +y, 4 -z, 5 +z; side faces get their own colour
    side_colour = {0: 2, 1: 0, 4: 3, 5: 1}

    def colour(_: str, points: np.ndarray, normals: np.ndarray, face: np.ndarray) -> np.ndarray:
        face = face[:, 0].astype(int)
        out = np.empty((len(points), 3))
        height = (points[:, 1] - y0) / (y1 - y0)
        for index, which in side_colour.items():
            pick = face == index
            across = points[pick, 2] if index in (0, 1) else points[pick, 0]  # horizontal coordinate
            wave = np.cos(2.0 * math.pi * p["stripes_per_face"] * (across + h) / (2 * h))
            stripe = 0.5 + 0.5 * wave  # raised cosine: 1 on a stripe, 0 between, no hard edges
            base = _mix(np.asarray(p["face_colours"][which]) * 0.75, p["face_colours"][which], height[pick])
            out[pick] = base * (1.0 - stripe[:, None]) + np.asarray(p["stripe_colour"])[None] * stripe[:, None]
        caps = (face == 2) | (face == 3)
        out[caps] = p["cap_colour"]
        return out

    return surface_gaussians([column], colour, n, rng)


def _twist_deform(g: Gaussians, phases: Tensor, p: Params, m: Params) -> tuple[Tensor, Tensor]:
    height = ((g.means[:, 1] - p["y_min"]) / (p["y_max"] - p["y_min"])).clamp(0.0, 1.0)
    amount = _sin2(phases).to(g.dtype)  # (T,): twists up and back, never at rest after frame 0
    angle = math.radians(m["max_angle_deg"]) * amount[:, None] * height[None]  # (T, N)
    means = rotate_about(g.means.expand(len(phases), -1, -1), angle, 1, g.means.new_zeros(3))
    quats = quat_multiply(axis_quat(angle, 1), g.quats)
    return means, quats


# --- hopping_torus -----------------------------------------------------------------------------

TORUS_SHAPE: Params = {
    "format": "ply",
    "centre": [0.0, -0.08, 0.0],
    "major_radius": 0.16,
    "minor_radius": 0.06,
    "colour_a": [0.95, 0.35, 0.30],
    "colour_b": [1.00, 0.80, 0.20],
    "band_colour": [0.20, 0.25, 0.45],
    "band_half_width_deg": 12.0,
}
TORUS_MOTION: Params = {"arc_half_width": 0.12, "hop_height": 0.12, "spin_deg": 360.0}


def _torus_gaussians(n: int, rng: np.random.Generator, p: Params) -> Gaussians:
    torus = torus_z("torus", p["centre"], p["major_radius"], p["minor_radius"])

    def colour(_: str, points, normals, uv) -> np.ndarray:
        u, v = uv[:, 0], uv[:, 1]
        out = _mix(p["colour_a"], p["colour_b"], 0.5 * (1.0 + np.cos(u)))  # warm gradient around
        out *= (0.85 + 0.15 * np.cos(v))[:, None]  # darker toward the hole
        band = np.abs(np.angle(np.exp(1j * (u - 0.5 * math.pi)))) < math.radians(p["band_half_width_deg"])
        out[band] = p["band_colour"]  # one dark band on top: the spin is visible
        return out

    return surface_gaussians([torus], colour, n, rng)


def _torus_deform(g: Gaussians, phases: Tensor, p: Params, m: Params) -> tuple[Tensor, Tensor]:
    centre = torch.tensor(p["centre"], dtype=g.dtype)
    cycle = 2.0 * math.pi * phases.to(g.dtype)
    angle = math.radians(m["spin_deg"]) * phases.to(g.dtype)  # (T,)
    spun = rotate_about(g.means.expand(len(phases), -1, -1), angle[:, None], 1, centre)
    shift = torch.stack(
        [
            m["arc_half_width"] * torch.sin(cycle),
            m["hop_height"] * torch.sin(cycle) ** 2,
            torch.zeros_like(cycle),
        ],
        dim=-1,
    )
    quats = quat_multiply(axis_quat(angle, 1)[:, None, :], g.quats)
    return spun + shift[:, None, :], quats


# --- arm_swing ---------------------------------------------------------------------------------

ARM_SHAPE: Params = {
    "format": "ply",
    "torso_centre": [-0.04, -0.06, 0.0],
    "torso_half": [0.10, 0.17, 0.07],
    "head_centre": [-0.04, 0.20, 0.0],
    "head_radius": 0.085,
    "arm_radius": 0.035,
    "arm_length": 0.26,
    "hand_radius": 0.04,
    "right_shoulder": [0.115, 0.08, 0.0],
    "left_shoulder": [-0.195, 0.08, 0.0],
    "leg_half": [0.035, 0.08, 0.045],
    "leg_x": [-0.09, 0.01],
    "shirt_colour": [0.20, 0.35, 0.80],
    "sleeve_colour": [0.85, 0.25, 0.20],
    "skin_colour": [0.95, 0.78, 0.62],
    "leg_colour": [0.25, 0.25, 0.30],
    "eye_colour": [0.10, 0.10, 0.12],
}
ARM_MOTION: Params = {"axis": "z", "pivot": "right_shoulder", "max_angle_deg": 80.0, "arm_min_x": 0.068}


def _arm_gaussians(n: int, rng: np.random.Generator, p: Params) -> Gaussians:
    torso_c, torso_h = np.asarray(p["torso_centre"]), np.asarray(p["torso_half"])
    parts = [box("torso", torso_c, torso_h), sphere("head", p["head_centre"], p["head_radius"])]
    for side in ("right", "left"):
        sx, sy, sz = p[f"{side}_shoulder"]
        parts.append(cylinder_y(f"{side}_arm", (sx, sz), sy - p["arm_length"], sy, p["arm_radius"]))
        parts.append(sphere(f"{side}_hand", (sx, sy - p["arm_length"], sz), p["hand_radius"]))
    leg_y = torso_c[1] - torso_h[1] - p["leg_half"][1]
    for index, x in enumerate(p["leg_x"]):
        parts.append(box(f"leg{index}", (x, leg_y, 0.0), p["leg_half"]))
    eyes = [np.asarray(p["head_centre"]) + np.array([dx, 0.02, 0.0]) for dx in (-0.03, 0.03)]

    def colour(name: str, points, normals, uv) -> np.ndarray:
        m = len(points)
        if name == "torso":
            height = (points[:, 1] - (torso_c[1] - torso_h[1])) / (2 * torso_h[1])
            out = _mix(np.asarray(p["shirt_colour"]) * 0.7, p["shirt_colour"], height)
            belt = np.abs(points[:, 1] - (torso_c[1] - 0.6 * torso_h[1])) < 0.018
            out[belt] = p["leg_colour"]
            return out
        if name == "head":
            out = np.tile(np.asarray(p["skin_colour"], float), (m, 1))
            for eye in eyes:  # eyes on the front (+z) face: front and back views differ
                near = (np.linalg.norm(points[:, :2] - eye[:2], axis=1) < 0.016) & (points[:, 2] > 0)
                out[near] = p["eye_colour"]
            return out
        if name.endswith("_arm"):
            return _mix(p["sleeve_colour"], np.asarray(p["sleeve_colour"]) * 0.75, 1.0 - uv[:, 1])
        if name.endswith("_hand"):
            return np.tile(np.asarray(p["skin_colour"], float), (m, 1))
        return np.tile(np.asarray(p["leg_colour"], float), (m, 1))

    return surface_gaussians(parts, colour, n, rng)


def _arm_deform(g: Gaussians, phases: Tensor, p: Params, m: Params) -> tuple[Tensor, Tensor]:
    arm = g.means[:, 0] > m["arm_min_x"]  # the right arm and hand: everything right of the torso
    angle = math.radians(m["max_angle_deg"]) * _sin2(phases).to(g.dtype)  # (T,): out and back
    angle_tn = angle[:, None] * arm.to(g.dtype)[None]  # (T, N), 0 off the arm
    pivot = torch.tensor(p[m["pivot"]], dtype=g.dtype)
    means = rotate_about(g.means.expand(len(phases), -1, -1), angle_tn, 2, pivot)
    return means, quat_multiply(axis_quat(angle_tn, 2), g.quats)


# --- waving_flag (textured .obj) ---------------------------------------------------------------

FLAG_SHAPE: Params = {
    "format": "obj",
    "yaw_deg": 40.0,  # the whole flag turned about y, so that the wave shows in the front view
    "pole_x": -0.22,
    "pole_radius": 0.012,
    "pole_y": [-0.36, 0.30],
    "pole_segments": 16,
    "pole_colour": [0.55, 0.42, 0.30],
    "cloth_x": [-0.208, 0.24],
    "cloth_y": [0.05, 0.29],
    "cloth_grid": [32, 16],
    "texture_size": [64, 32],
    "band_colours": [[0.12, 0.20, 0.55], [0.97, 0.97, 0.95], [0.80, 0.12, 0.18]],
    "emblem_colour": [0.98, 0.80, 0.15],
}
FLAG_MOTION: Params = {"amplitude": 0.1, "wavelengths": 1.0, "cycles": 2.0}


def _flag_yaw(p: Params) -> np.ndarray:
    a = math.radians(p["yaw_deg"])
    return np.array([[math.cos(a), 0.0, math.sin(a)], [0.0, 1.0, 0.0], [-math.sin(a), 0.0, math.cos(a)]])


def _flag_texture(p: Params) -> bytes:
    width, height = p["texture_size"]
    to8 = lambda c: tuple(int(round(255 * x)) for x in c)  # noqa: E731
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    bands = p["band_colours"]
    for index, band in enumerate(bands):
        top = round(index * height / len(bands))
        bottom = round((index + 1) * height / len(bands)) - 1
        draw.rectangle([0, top, width - 1, bottom], fill=to8(band))
    r = height // 4
    centre = height // 2  # the emblem sits in the hoist (pole side) of the cloth
    draw.ellipse([centre - r, centre - r, centre + r, centre + r], fill=to8(p["emblem_colour"]))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=9)
    return buffer.getvalue()


def _write_flag(folder: str, n: int, seed: int, p: Params) -> str:
    """A textured OBJ: pole (plain ``Kd`` material) and cloth (``map_Kd`` texture), flag.png beside."""
    rot = _flag_yaw(p)
    fmt = lambda v: " ".join(f"{x:.6f}" for x in v)  # noqa: E731
    lines = ["# align4d sample: waving_flag, canonical state (frame 0)", "mtllib object.mtl"]
    # pole: side quads (two triangles each) and a top cap fan
    seg, (y0, y1), radius = p["pole_segments"], p["pole_y"], p["pole_radius"]
    ring = [
        (p["pole_x"] + radius * math.sin(2 * math.pi * k / seg), radius * math.cos(2 * math.pi * k / seg))
        for k in range(seg)
    ]
    verts = [(x, y, z) for y in (y0, y1) for x, z in ring] + [(p["pole_x"], y1, 0.0)]
    lines += ["o pole"] + [f"v {fmt(rot @ np.asarray(v))}" for v in verts] + ["usemtl pole"]
    for k in range(seg):
        a, b = 1 + k, 1 + (k + 1) % seg
        lines += [f"f {a} {b} {b + seg}", f"f {a} {b + seg} {a + seg}", f"f {a + seg} {b + seg} {2 * seg + 1}"]
    base = len(verts)
    # cloth: a grid with UVs over the whole texture
    (cx0, cx1), (cy0, cy1), (gx, gy) = p["cloth_x"], p["cloth_y"], p["cloth_grid"]
    lines.append("o cloth")
    for j in range(gy + 1):
        for i in range(gx + 1):
            local = np.array([cx0 + (cx1 - cx0) * i / gx, cy0 + (cy1 - cy0) * j / gy, 0.0])
            lines.append(f"v {fmt(rot @ local)}")
    for j in range(gy + 1):
        for i in range(gx + 1):
            lines.append(f"vt {i / gx:.6f} {j / gy:.6f}")
    lines.append("usemtl cloth")
    for j in range(gy):
        for i in range(gx):
            a = j * (gx + 1) + i + 1
            b, c, d = a + 1, a + gx + 2, a + gx + 1
            lines += [
                f"f {base + a}/{a} {base + b}/{b} {base + c}/{c}",
                f"f {base + a}/{a} {base + c}/{c} {base + d}/{d}",
            ]
    mtl = f"newmtl pole\nKd {fmt(p['pole_colour'])}\n\nnewmtl cloth\nKd 1.000000 1.000000 1.000000\nmap_Kd flag.png\n"
    storage.write_bytes(storage.join(folder, "flag.png"), _flag_texture(p))
    storage.write_text(storage.join(folder, "object.mtl"), mtl)
    storage.write_text(storage.join(folder, "object.obj"), "\n".join(lines) + "\n")
    return "object.obj"


def _flag_deform(g: Gaussians, phases: Tensor, p: Params, m: Params) -> tuple[Tensor, Tensor]:
    rot = torch.tensor(_flag_yaw(p), dtype=g.dtype)
    local = g.means @ rot  # rows: world = rot @ local, so local = world @ rot
    x0, x1 = p["cloth_x"]
    u = ((local[:, 0] - x0) / (x1 - x0)).clamp(0.0, 1.0)  # 0 at the pole (which never moves)
    wave = torch.sin(2.0 * math.pi * (m["wavelengths"] * u[None] - m["cycles"] * phases.to(g.dtype)[:, None]))
    dz = m["amplitude"] * u[None] * _sin2(phases).to(g.dtype)[:, None] * wave  # (T, N)
    normal = rot[:, 2]  # the cloth's local z axis in world space
    return g.means[None] + dz[..., None] * normal, g.quats.expand(len(phases), -1, -1).contiguous()


# --- pulsing_blob (vertex-coloured .glb) --------------------------------------------------------

BLOB_SHAPE: Params = {
    "format": "glb",
    "radius": 0.3,
    "subdivisions": 3,
    "top_colour": [0.85, 0.25, 0.65],
    "bottom_colour": [0.10, 0.65, 0.70],
    "band_colour": [1.00, 0.85, 0.25],
    "band_half_height": 0.06,
}
BLOB_MOTION: Params = {"amplitude": 0.15, "wave_number": 3.0, "cycles": 2.0}


def _write_blob(folder: str, n: int, seed: int, p: Params) -> str:
    mesh = trimesh.creation.icosphere(subdivisions=p["subdivisions"], radius=p["radius"])
    y = np.asarray(mesh.vertices)[:, 1] / p["radius"]
    rgb = _mix(p["bottom_colour"], p["top_colour"], 0.5 * (1.0 + y))
    rgb[np.abs(y) < p["band_half_height"] / p["radius"]] = p["band_colour"]
    colours = np.round(np.clip(rgb, 0.0, 1.0) * 255).astype(np.uint8)
    mesh.visual.vertex_colors = np.concatenate([colours, np.full((len(colours), 1), 255, np.uint8)], axis=1)
    storage.write_bytes(storage.join(folder, "object.glb"), mesh.export(file_type="glb"))
    return "object.glb"


def _blob_deform(g: Gaussians, phases: Tensor, p: Params, m: Params) -> tuple[Tensor, Tensor]:
    radius = g.means.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    polar = torch.acos((g.means[:, 1:2] / radius).clamp(-1.0, 1.0))[:, 0]  # 0 at the top
    phase = phases.to(g.dtype)[:, None]
    wave = torch.sin(m["wave_number"] * polar[None] - 2.0 * math.pi * m["cycles"] * phase)  # travels down
    scale = 1.0 + m["amplitude"] * _sin2(phases).to(g.dtype)[:, None] * wave  # (T, N)
    return g.means[None] * scale[..., None], g.quats.expand(len(phases), -1, -1).contiguous()


# --- the registry ------------------------------------------------------------------------------

SAMPLE_OBJECTS: tuple[SampleObject, ...] = (
    SampleObject(
        id="twist_column",
        prompt="a striped square column twisting about its vertical axis and untwisting again",
        distance=1.15,
        video_format="png",
        shape="square_column",
        shape_params=TWIST_SHAPE,
        motion="twist",
        motion_params=TWIST_MOTION,
        write=_write_ply(_twist_gaussians),
        deform_fn=_twist_deform,
    ),
    SampleObject(
        id="hopping_torus",
        prompt="an orange and yellow ring hopping along a small arc while spinning",
        distance=1.55,
        video_format="mp4",
        shape="torus",
        shape_params=TORUS_SHAPE,
        motion="rigid_hop_spin",
        motion_params=TORUS_MOTION,
        write=_write_ply(_torus_gaussians),
        deform_fn=_torus_deform,
    ),
    SampleObject(
        id="arm_swing",
        prompt="a blocky figure in a blue shirt raising and lowering its right arm",
        distance=1.9,
        video_format="png",
        shape="figure",
        shape_params=ARM_SHAPE,
        motion="articulated_swing",
        motion_params=ARM_MOTION,
        write=_write_ply(_arm_gaussians),
        deform_fn=_arm_deform,
    ),
    SampleObject(
        id="waving_flag",
        prompt="a blue, white and red flag with a yellow emblem waving on a wooden pole",
        distance=2.25,
        video_format="png",
        shape="flag_on_pole",
        shape_params=FLAG_SHAPE,
        motion="travelling_wave",
        motion_params=FLAG_MOTION,
        write=_write_flag,
        deform_fn=_flag_deform,
    ),
    SampleObject(
        id="pulsing_blob",
        prompt="a pink and teal ball pulsing with ripples running from top to bottom",
        distance=2.6,
        video_format="mp4",
        shape="icosphere",
        shape_params=BLOB_SHAPE,
        motion="radial_wave",
        motion_params=BLOB_MOTION,
        write=_write_blob,
        deform_fn=_blob_deform,
    ),
)


def object_by_id() -> dict[str, SampleObject]:
    return {obj.id: obj for obj in SAMPLE_OBJECTS}
