"""The deformation field that turns canonical 3D Gaussians into a 4D object (DESIGN.md §5).

A 4D object is a canonical set of Gaussians plus this field: for a frame t it predicts, per
Gaussian, offsets of the position, the raw quaternion and the log-scale. The field is the one of
4DGaussians / DreamGaussian4D: a HexPlane (six feature planes over the coordinate pairs of x, y, z,
t, multiplied together) feeding a small MLP trunk with one head per offset.

Decisions the papers leave open, fixed here:

* **Bounds.** The planes cover a box fixed when the field is built: the canonical means' bounding
  box grown on every side by ``bounds_margin`` times its longest side (so a flat object still gets
  room to move out of its plane). The box is a buffer, saved with the weights. Points outside it --
  canonical means the optimizer moved, or Gaussians added by densification -- are *clamped* onto
  its surface for the grid lookup: they read the features of the nearest boundary cell and get no
  gradient from the grid through their position, but they still move with the field.
* **Time.** Frame t of T is ``t / (T - 1) * 2 - 1`` (0 for a single frame). With the default
  temporal resolution T and ``align_corners=True``, every frame lies exactly on its own grid node.
* **Rotation.** Δrotation is added to the *raw* wxyz quaternion and normalised only when rendered,
  as 4DGaussians does; no quaternion product is involved.
* **Identity at initialisation.** The last layer of every head is zero, so an untrained field
  returns exact zeros and every frame equals the canonical Gaussians bit for bit. The zero layer
  still receives gradients (its input is non-zero), so training starts at once.

Files are safetensors (no pickle) whose metadata carry the config, frame count and bounds as JSON,
so a ``deformation.safetensors`` can be read without the run that wrote it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_save
from torch import Tensor, nn

from align4d_core.config import DeformationConfig
from align4d_core.errors import InputError
from align4d_core.io import storage
from align4d_core.scene.gaussians import Gaussians

__all__ = [
    "Deltas",
    "DeformationField",
    "FILE_FORMAT",
    "HexPlane",
    "deform",
    "frame_times",
    "load_deformation",
    "object_bounds",
    "read_deformation_metadata",
    "save_deformation",
]

FILE_FORMAT = "align4d.deformation/1"
"""The ``format`` entry of a deformation file's metadata; a file without it is refused."""

_X, _Y, _Z, _T = 0, 1, 2, 3
_SPATIAL_PAIRS = ((_X, _Y), (_X, _Z), (_Y, _Z))
_TEMPORAL_PAIRS = ((_X, _T), (_Y, _T), (_Z, _T))
_MIN_EXTENT = 1e-3  # world units: a single point (or an empty set) still gets a box to deform in


class HexPlane(nn.Module):
    """Six feature planes whose bilinear samples, multiplied, give a feature per (point, time).

    Plane (a, b) has shape ``(1, feature_dim, res_a, res_b)``. Spatial planes start ~ U(plane_init)
    and time planes at 1, the K-Planes / 4DGaussians initialisation: at first the features do not
    depend on time, so the motion grows out of a static object.
    """

    def __init__(
        self,
        feature_dim: int,
        spatial_resolution: int,
        temporal_resolution: int,
        plane_init: tuple[float, float] = (0.1, 0.5),
    ) -> None:
        super().__init__()
        if min(feature_dim, spatial_resolution, temporal_resolution) < 1:
            raise ValueError("feature_dim and the plane resolutions must be at least 1")
        res = (spatial_resolution, spatial_resolution, spatial_resolution, temporal_resolution)
        self.planes = nn.ParameterList()
        for a, b in _SPATIAL_PAIRS:
            self.planes.append(nn.Parameter(torch.empty(1, feature_dim, res[a], res[b]).uniform_(*plane_init)))
        for a, b in _TEMPORAL_PAIRS:
            self.planes.append(nn.Parameter(torch.ones(1, feature_dim, res[a], res[b])))

    def forward(self, xyz: Tensor, t: Tensor) -> Tensor:
        """Features ``(T, N, feature_dim)`` for points ``xyz (N, 3)`` and times ``t (T,)`` in [-1, 1].

        The spatial product is computed once for the N points and broadcast over time; only the
        three time planes are sampled at all N x T pairs.
        """
        xyz = xyz.to(self.planes[0].dtype)
        t = t.to(self.planes[0].dtype)
        spatial = torch.ones((), dtype=xyz.dtype, device=xyz.device)
        for plane, (a, b) in zip(self.planes[:3], _SPATIAL_PAIRS):
            grid = torch.stack([xyz[:, b], xyz[:, a]], dim=-1)[None, None]  # (1, 1, N, 2)
            spatial = spatial * _sample(plane, grid)[:, 0]  # (C, N)
        features = spatial[:, None, :]  # (C, 1, N)
        n, steps = xyz.shape[0], t.shape[0]
        for plane, (a, _) in zip(self.planes[3:], _TEMPORAL_PAIRS):
            grid = torch.stack([t[:, None].expand(steps, n), xyz[None, :, a].expand(steps, n)], dim=-1)[None]
            features = features * _sample(plane, grid)  # (C, T, N)
        return features.permute(1, 2, 0)


def _sample(plane: Tensor, grid: Tensor) -> Tensor:
    """Bilinear lookup; ``grid[..., 0]`` indexes the plane's last axis (grid_sample's x)."""
    return F.grid_sample(plane, grid, mode="bilinear", padding_mode="border", align_corners=True)[0]


@dataclass
class Deltas:
    """Per-frame offsets of the raw Gaussian parameters, each ``(T, N, ·)``."""

    d_means: Tensor
    d_quats: Tensor
    d_log_scales: Tensor


def object_bounds(means: Tensor, margin: float) -> Tensor:
    """``(2, 3)`` min and max corners of the box the planes cover (see the module notes)."""
    means = means.detach().reshape(-1, 3)
    if means.shape[0] == 0:
        lo = hi = torch.zeros(3, dtype=means.dtype, device=means.device)
    else:
        lo, hi = means.min(dim=0).values, means.max(dim=0).values
    pad = max(margin * float((hi - lo).max()), _MIN_EXTENT)
    return torch.stack([lo - pad, hi + pad])


class DeformationField(nn.Module):
    """HexPlane + MLP heads: ``field(means, times)`` gives the :class:`Deltas` of every frame.

    Build it with :meth:`from_gaussians` around the canonical object; ``bounds`` and ``n_frames``
    are what a saved file needs to rebuild the same field.
    """

    def __init__(self, config: DeformationConfig, n_frames: int, bounds: Tensor) -> None:
        super().__init__()
        if n_frames < 1:
            raise ValueError(f"n_frames must be at least 1, got {n_frames}")
        bounds = torch.as_tensor(bounds, dtype=torch.float32)
        if bounds.shape != (2, 3) or not bool((bounds[1] > bounds[0]).all()):
            raise ValueError(f"bounds must be (2, 3) with max > min on every axis, got {bounds.tolist()}")
        self.config = config
        self.n_frames = n_frames
        self.register_buffer("bounds_min", bounds[0].clone())
        self.register_buffer("bounds_max", bounds[1].clone())
        temporal = config.temporal_resolution if config.temporal_resolution is not None else n_frames
        self.grid = HexPlane(config.feature_dim, config.spatial_resolution, temporal, config.plane_init)
        layers: list[nn.Module] = []
        width = config.feature_dim
        for _ in range(config.depth):
            layers += [nn.Linear(width, config.hidden), nn.ReLU()]
            width = config.hidden
        self.trunk = nn.Sequential(*layers)
        self.position = _zero_head(width, config.hidden, 3)
        self.rotation = _zero_head(width, config.hidden, 4)
        self.scale = _zero_head(width, config.hidden, 3)

    @classmethod
    def from_gaussians(
        cls, canonical: Gaussians, n_frames: int, config: DeformationConfig = DeformationConfig()
    ) -> DeformationField:
        """A field around ``canonical`` (on its device) that leaves every frame equal to it."""
        bounds = object_bounds(canonical.means, config.bounds_margin)
        return cls(config, n_frames, bounds.float().cpu()).to(canonical.device)

    @property
    def bounds(self) -> Tensor:
        return torch.stack([self.bounds_min, self.bounds_max])

    def normalise(self, means: Tensor) -> Tensor:
        """World positions to the planes' [-1, 1] cube, clamped onto it (see the module notes)."""
        unit = (means.to(self.bounds_min.dtype) - self.bounds_min) / (self.bounds_max - self.bounds_min)
        return (unit * 2.0 - 1.0).clamp(-1.0, 1.0)

    def forward(self, means: Tensor, times: Tensor) -> Deltas:
        """Offsets for canonical ``means (N, 3)`` at normalised ``times (T,)`` in [-1, 1]."""
        hidden = self.trunk(self.grid(self.normalise(means), times))
        return Deltas(self.position(hidden), self.rotation(hidden), self.scale(hidden))

    def grid_parameters(self) -> Iterator[nn.Parameter]:
        """The planes, trained with DreamGaussian4D's larger ``grid_lr``."""
        return self.grid.parameters()

    def mlp_parameters(self) -> Iterator[nn.Parameter]:
        """Trunk and heads, trained with ``deformation_lr``."""
        for module in (self.trunk, self.position, self.rotation, self.scale):
            yield from module.parameters()


def _zero_head(width: int, hidden: int, out: int) -> nn.Sequential:
    head = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, out))
    nn.init.zeros_(head[-1].weight)
    nn.init.zeros_(head[-1].bias)
    return head


# --- frames ------------------------------------------------------------------------------------


def frame_times(frames: Tensor, n_frames: int) -> Tensor:
    """Frame indices ``0..T-1`` as the field's times in [-1, 1] (DESIGN.md §4); T = 1 gives 0."""
    frames = torch.as_tensor(frames)
    if n_frames < 1:
        raise ValueError(f"n_frames must be at least 1, got {n_frames}")
    if frames.numel() and (int(frames.min()) < 0 or int(frames.max()) >= n_frames):
        raise ValueError(f"frame indices must lie in 0..{n_frames - 1}, got {frames.tolist()}")
    if n_frames == 1:
        return torch.zeros(frames.shape, dtype=torch.float32, device=frames.device)
    return frames.to(torch.float32) / (n_frames - 1) * 2.0 - 1.0


def deform(canonical: Gaussians, field: DeformationField, frame_index: Tensor, n_frames: int) -> Gaussians:
    """The Gaussians at each frame of ``frame_index (K,)``, batched ``(K, N, ·)``.

    Opacities and colours do not move; they are expanded views of the canonical tensors, so the
    gradient of every frame reaches the one canonical parameter.
    """
    if canonical.batched:
        raise ValueError(f"deform takes unbatched canonical Gaussians, got {tuple(canonical.means.shape)}")
    times = frame_times(torch.as_tensor(frame_index, device=canonical.device), n_frames)
    deltas = field(canonical.means, times)
    k, n = times.shape[0], len(canonical)
    return Gaussians(
        means=canonical.means + deltas.d_means.to(canonical.dtype),
        log_scales=canonical.log_scales + deltas.d_log_scales.to(canonical.dtype),
        quats=canonical.quats + deltas.d_quats.to(canonical.dtype),
        opacity_logits=canonical.opacity_logits.expand(k, n),
        sh0=canonical.sh0.expand(k, n, 3),
    )


# --- files -------------------------------------------------------------------------------------


def save_deformation(uri: str, field: DeformationField, metadata: dict | None = None) -> None:
    """Write ``field`` as safetensors, atomically; ``metadata`` (JSON-able) is stored beside it."""
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in field.state_dict().items()}
    header = {
        "format": FILE_FORMAT,
        "config": json.dumps(asdict(field.config), sort_keys=True),
        "n_frames": str(field.n_frames),
        "bounds": json.dumps(field.bounds.tolist()),
        "metadata": json.dumps(metadata or {}, sort_keys=True, allow_nan=False),
    }
    storage.write_bytes(uri, safetensors_save(tensors, metadata=header))


def load_deformation(uri: str, device: str | torch.device = "cpu") -> DeformationField:
    """Rebuild the field a :func:`save_deformation` file describes; bad files raise InputError."""
    uri = str(uri)
    header, tensors = _read_safetensors(uri)
    with torch.random.fork_rng(devices=[]):  # the random init is overwritten: leave the caller's seed alone
        field = _field_from_header(header, uri)
    try:
        field.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise InputError(f"weights do not match the stored config ({exc})", uri=uri) from None
    return field.to(device)


def read_deformation_metadata(uri: str) -> dict:
    """The caller's ``metadata`` given to :func:`save_deformation` (e.g. the fitted distance)."""
    header, _ = _read_safetensors(str(uri))
    if header.get("format") != FILE_FORMAT:
        raise InputError(f"not an align4d deformation file (format {header.get('format')!r})", uri=str(uri))
    return _json_entry(header, "metadata", str(uri))


def _read_safetensors(uri: str) -> tuple[dict[str, str], dict[str, Tensor]]:
    with storage.local_copy(uri, suffix=".safetensors") as path:
        try:
            with safe_open(path, framework="pt") as handle:
                return handle.metadata() or {}, {name: handle.get_tensor(name) for name in handle.keys()}
        except (SafetensorError, OSError, ValueError) as exc:
            raise InputError(f"not a safetensors file ({exc})", uri=uri) from None


def _field_from_header(header: dict[str, str], uri: str) -> DeformationField:
    if header.get("format") != FILE_FORMAT:
        raise InputError(f"not an align4d deformation file (format {header.get('format')!r})", uri=uri)
    raw = _json_entry(header, "config", uri)
    try:
        if raw.get("plane_init") is not None:
            raw["plane_init"] = tuple(raw["plane_init"])
        config = DeformationConfig(**raw)
        return DeformationField(config, int(header["n_frames"]), torch.tensor(_json_entry(header, "bounds", uri)))
    except (AttributeError, TypeError, ValueError, KeyError) as exc:
        raise InputError(f"invalid deformation config in the metadata ({exc})", uri=uri) from None


def _json_entry(header: dict[str, str], key: str, uri: str):
    try:
        return json.loads(header[key])
    except (KeyError, json.JSONDecodeError) as exc:
        raise InputError(f"metadata entry {key!r} is missing or not JSON ({exc})", uri=uri) from None
