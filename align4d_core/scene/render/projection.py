"""EWA projection of 3D Gaussians to screen-space ellipses, exactly as gsplat does it.

The CPU renderer must give the image gsplat gives on CUDA, so every rule here is gsplat 1.5's
(``fully_fused_projection`` with the pinhole model): the Jacobian evaluated at a position clamped
to 1.3× the field of view, a 0.3 px² low-pass (``eps2d``) added to the 2D covariance, near/far
culling, the opacity-aware bounding radius ``ceil(min(3.33, sqrt(2 ln(255 o))) · σ)`` per axis,
and culling of ellipses that fall outside the image. It is plain differentiable PyTorch; the
rasterizer differentiates through it with autograd.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

ALPHA_MIN = 1.0 / 255.0
"""A Gaussian contributes to a pixel only where its alpha reaches this (gsplat's ALPHA_THRESHOLD)."""
ALPHA_MAX = 0.999
"""Alpha is clamped below this, so transmittance never reaches 0 in one step (gsplat)."""
TRANSMITTANCE_MIN = 1e-4
"""A pixel is finished once its transmittance would fall to this; that Gaussian is left out (gsplat)."""
RADIUS_SIGMAS = 3.33
"""Largest bounding radius in standard deviations (gsplat)."""


@dataclass
class Projection:
    """Per (camera, Gaussian) screen-space ellipses; all fields lead with (B, N)."""

    means2d: Tensor  # (B, N, 2) pixel coordinates of the centres
    cov2d: Tensor  # (B, N, 2, 2) screen covariance, low-pass included
    conics: Tensor  # (B, N, 3) inverse covariance (a, b, c): 0.5(a dx² + c dy²) + b dx dy
    depths: Tensor  # (B, N) camera-space z
    radii: Tensor  # (B, N, 2) int32 bounding half-extents in pixels; 0 where culled


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """(..., 3, 3) rotation matrices for (..., 4) wxyz quaternions of any norm."""
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z),
        2 * (x * y - w * z),
        2 * (x * z + w * y),
        2 * (x * y + w * z),
        1 - 2 * (x * x + z * z),
        2 * (y * z - w * x),
        2 * (x * z - w * y),
        2 * (y * z + w * x),
        1 - 2 * (x * x + y * y),
    ]
    return torch.stack(rows, dim=-1).reshape(quats.shape[:-1] + (3, 3))


def covariance_3d(quats: Tensor, scales: Tensor) -> Tensor:
    """Σ = R S Sᵀ Rᵀ for rotation R from ``quats`` and S = diag(scales)."""
    m = quat_to_rotmat(quats) * scales[..., None, :]
    return m @ m.transpose(-1, -2)


def project(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    *,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
) -> Projection:
    """Project Gaussians ((N, ·) shared by all cameras, or (B, N, ·) one set per camera).

    ``viewmats`` are (B, 4, 4) OpenCV world-to-camera matrices and ``Ks`` (B, 3, 3) intrinsics.
    """
    n_cams = viewmats.shape[0]
    rot, trans = viewmats[:, :3, :3], viewmats[:, :3, 3]
    if means.dim() == 2:
        means_c = torch.einsum("bij,nj->bni", rot, means) + trans[:, None, :]
        cov_c = torch.einsum("bij,njk,blk->bnil", rot, covariance_3d(quats, scales), rot)
    else:
        means_c = torch.einsum("bij,bnj->bni", rot, means) + trans[:, None, :]
        cov_c = torch.einsum("bij,bnjk,blk->bnil", rot, covariance_3d(quats, scales), rot)
    opacities = opacities.expand(n_cams, means_c.shape[1]) if opacities.dim() == 1 else opacities

    tx, ty, depths = means_c.unbind(-1)
    # Culled Gaussians (behind the near plane) still go through the maths below; a stand-in depth
    # keeps their (unused) values finite so that no 0 * inf turns gradients into NaN.
    tz = torch.where(depths >= near_plane, depths, torch.ones_like(depths))
    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    # The Jacobian is evaluated no further out than 1.3x the field of view (gsplat, 3DGS), which
    # keeps Gaussians far outside the frustum from smearing across the image.
    lim_x_pos, lim_x_neg = (width - cx) / fx + 0.3 * tan_fovx, cx / fx + 0.3 * tan_fovx
    lim_y_pos, lim_y_neg = (height - cy) / fy + 0.3 * tan_fovy, cy / fy + 0.3 * tan_fovy
    tx_c = tz * torch.maximum(torch.minimum(tx / tz, lim_x_pos), -lim_x_neg)
    ty_c = tz * torch.maximum(torch.minimum(ty / tz, lim_y_pos), -lim_y_neg)
    zero = torch.zeros_like(tz)
    jac = torch.stack([fx / tz, zero, -fx * tx_c / (tz * tz), zero, fy / tz, -fy * ty_c / (tz * tz)], dim=-1).reshape(
        tz.shape + (2, 3)
    )
    cov2d = jac @ cov_c @ jac.transpose(-1, -2)
    cov2d = cov2d + eps2d * torch.eye(2, dtype=cov2d.dtype, device=cov2d.device)
    means2d = torch.stack([fx * tx / tz + cx, fy * ty / tz + cy], dim=-1)

    a, b, c = cov2d[..., 0, 0], 0.5 * (cov2d[..., 0, 1] + cov2d[..., 1, 0]), cov2d[..., 1, 1]
    det = (a * c - b * b).clamp_min(1e-10)
    conics = torch.stack([c / det, -b / det, a / det], dim=-1)

    radii = _radii(
        means2d.detach(), cov2d.detach(), depths.detach(), opacities.detach(), width, height, near_plane, far_plane
    )
    return Projection(means2d=means2d, cov2d=cov2d, conics=conics, depths=depths, radii=radii)


@torch.no_grad()
def _radii(
    means2d: Tensor,
    cov2d: Tensor,
    depths: Tensor,
    opacities: Tensor,
    width: int,
    height: int,
    near_plane: float,
    far_plane: float,
) -> Tensor:
    """gsplat's opacity-aware bounding box, zero for every culled (camera, Gaussian).

    A Gaussian with a non-finite position, covariance or opacity is culled too, so that a diverging
    optimisation produces a blank render (and a clear error upstream), never out-of-range indices.
    """
    det = cov2d[..., 0, 0] * cov2d[..., 1, 1] - cov2d[..., 0, 1] * cov2d[..., 1, 0]
    visible_opacity = opacities >= ALPHA_MIN
    extend = torch.sqrt(2.0 * torch.log(opacities.clamp_min(ALPHA_MIN) / ALPHA_MIN)).clamp(max=RADIUS_SIGMAS)
    rx = torch.ceil(extend * torch.sqrt(cov2d[..., 0, 0].clamp_min(0)))
    ry = torch.ceil(extend * torch.sqrt(cov2d[..., 1, 1].clamp_min(0)))
    inside = (
        (means2d[..., 0] + rx > 0)
        & (means2d[..., 0] - rx < width)
        & (means2d[..., 1] + ry > 0)
        & (means2d[..., 1] - ry < height)
    )
    finite = (
        torch.isfinite(means2d).all(dim=-1) & torch.isfinite(cov2d).flatten(-2).all(dim=-1) & torch.isfinite(opacities)
    )
    keep = finite & (det > 0) & (depths >= near_plane) & (depths <= far_plane) & visible_opacity & inside
    keep &= (rx > 0) | (ry > 0)
    radii = torch.where(keep[..., None], torch.stack([rx, ry], dim=-1), 0.0)
    return radii.to(torch.int32)
