"""Orbit cameras around the object, in the one convention of DESIGN.md §4.

World: y up. The camera orbits the origin and looks at it; its OpenGL camera-to-world matrix
(x right, y up, z backward) is what :class:`Cameras` stores. Azimuth 0 puts the camera on +z (the
front view of the input video); azimuth grows from +z toward +x; elevation is positive with the
camera above the object; the radius is the object distance that ODA searches. The default vertical
field of view is 49.1°, DreamGaussian4D's and LGM's.

The renderer (ours and gsplat's) wants OpenCV world-to-camera matrices (x right, y down, z forward):
:attr:`Cameras.viewmats` gives them. Other codebases' conventions are converted where they enter,
in one function each, beside their own code.

Every camera in align4d is built by :func:`orbit_cameras`, from arrays of elevations, azimuths and
radii that broadcast together.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from align4d_core.config.schema import FOVY_DEG  # the vertical field of view, degrees (DESIGN.md §4)

_GL_TO_CV = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64))


@dataclass(frozen=True)
class Cameras:
    """A batch of B pinhole cameras of one image size."""

    c2w: Tensor  # (B, 4, 4) OpenGL camera-to-world
    Ks: Tensor  # (B, 3, 3) intrinsics in pixels; pixel centres at integer + 0.5
    width: int
    height: int

    def __post_init__(self) -> None:
        if self.c2w.dim() != 3 or self.c2w.shape[1:] != (4, 4):
            raise ValueError(f"c2w must be (B, 4, 4), got {tuple(self.c2w.shape)}")
        if self.Ks.shape != (self.c2w.shape[0], 3, 3):
            raise ValueError(f"Ks must be ({self.c2w.shape[0]}, 3, 3), got {tuple(self.Ks.shape)}")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"image size must be positive, got {self.width}x{self.height}")

    def __len__(self) -> int:
        return int(self.c2w.shape[0])

    def __getitem__(self, index) -> Cameras:
        c2w, Ks = self.c2w[index], self.Ks[index]
        if c2w.dim() == 2:
            c2w, Ks = c2w[None], Ks[None]
        return Cameras(c2w, Ks, self.width, self.height)

    def to(self, *args, **kwargs) -> Cameras:
        return Cameras(self.c2w.to(*args, **kwargs), self.Ks.to(*args, **kwargs), self.width, self.height)

    @property
    def positions(self) -> Tensor:
        """(B, 3) camera centres in world space."""
        return self.c2w[:, :3, 3]

    @property
    def viewmats(self) -> Tensor:
        """(B, 4, 4) OpenCV world-to-camera matrices (x right, y down, z forward), gsplat's input."""
        c2w_cv = self.c2w @ _GL_TO_CV.to(self.c2w)
        rot, trans = c2w_cv[:, :3, :3], c2w_cv[:, :3, 3:]
        rot_t = rot.transpose(1, 2)
        bottom = torch.zeros_like(c2w_cv[:, 3:, :])
        bottom[:, 0, 3] = 1.0
        return torch.cat([torch.cat([rot_t, -rot_t @ trans], dim=2), bottom], dim=1)


def intrinsics(width: int, height: int, fovy_deg: float = FOVY_DEG) -> Tensor:
    """(3, 3) pinhole intrinsics, square pixels, principal point at the image centre (float64)."""
    focal = 0.5 * height / math.tan(math.radians(fovy_deg) / 2.0)
    return torch.tensor([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]], dtype=torch.float64)


def orbit_positions(elevations: Tensor, azimuths: Tensor, radii: Tensor) -> Tensor:
    """(..., 3) camera centres for elevation/azimuth in degrees and radius = object distance."""
    el, az = torch.deg2rad(elevations), torch.deg2rad(azimuths)
    return torch.stack(
        [radii * torch.cos(el) * torch.sin(az), radii * torch.sin(el), radii * torch.cos(el) * torch.cos(az)],
        dim=-1,
    )


def orbit_c2w(elevations: Tensor, azimuths: Tensor, radii: Tensor) -> Tensor:
    """(B, 4, 4) OpenGL camera-to-world matrices of cameras on the orbit, looking at the origin.

    The camera's right axis is (cos az, 0, -sin az) at every elevation, which is what the usual
    cross product with world-up gives wherever it is defined, and it stays defined straight above
    and below the object.
    """
    el, az = torch.deg2rad(elevations), torch.deg2rad(azimuths)
    back = torch.stack([torch.cos(el) * torch.sin(az), torch.sin(el), torch.cos(el) * torch.cos(az)], dim=-1)
    right = torch.stack([torch.cos(az), torch.zeros_like(az), -torch.sin(az)], dim=-1)
    up = torch.linalg.cross(back, right)
    c2w = torch.zeros(back.shape[:-1] + (4, 4), dtype=back.dtype, device=back.device)
    c2w[..., :3, 0] = right
    c2w[..., :3, 1] = up
    c2w[..., :3, 2] = back
    c2w[..., :3, 3] = back * radii[..., None]
    c2w[..., 3, 3] = 1.0
    return c2w


def _as_tensor(values: float | Sequence[float] | Tensor) -> Tensor:
    if isinstance(values, Tensor):
        return values.detach().to(torch.float64).reshape(-1)
    return torch.as_tensor(values, dtype=torch.float64).reshape(-1)


def orbit_cameras(
    elevations: float | Sequence[float] | Tensor,
    azimuths: float | Sequence[float] | Tensor,
    radii: float | Sequence[float] | Tensor,
    *,
    width: int,
    height: int | None = None,
    fovy_deg: float = FOVY_DEG,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> Cameras:
    """The batch of orbit cameras for broadcast arrays of elevations, azimuths (°) and radii.

    This is the only constructor of cameras in align4d: ODA's distance sweep, the evaluation views
    and the random views of MGJA all call it, so they share one convention.
    """
    height = width if height is None else height
    el, az, rad = torch.broadcast_tensors(_as_tensor(elevations), _as_tensor(azimuths), _as_tensor(radii))
    if bool((rad <= 0).any()):
        raise ValueError(f"object distances must be positive, got min {float(rad.min())}")
    c2w = orbit_c2w(el, az, rad)
    Ks = intrinsics(width, height, fovy_deg).expand(c2w.shape[0], 3, 3)
    return Cameras(c2w.to(dtype=dtype, device=device), Ks.to(dtype=dtype, device=device).contiguous(), width, height)
