"""The slow renderer the fast ones are checked against.

Every Gaussian is evaluated at every pixel, in float64, and composited front to back one Gaussian
at a time, with gsplat's per-pixel loop written out literally (vectorised over pixels only). The
projection is written again here, matrix by matrix, rather than imported, so that a mistake in the
fast path's projection cannot hide in both. Autograd differentiates it, which gives the reference
gradients. It is meant for tests and benchmarks on small scenes.
"""

from __future__ import annotations

import torch
from torch import Tensor

from align4d_core.scene.render.projection import ALPHA_MAX, ALPHA_MIN, TRANSMITTANCE_MIN


def _rotation(q: Tensor) -> Tensor:
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    r = torch.empty(q.shape[:-1] + (3, 3), dtype=q.dtype, device=q.device)
    r[..., 0, 0], r[..., 0, 1], r[..., 0, 2] = 1 - 2 * (y**2 + z**2), 2 * (x * y - w * z), 2 * (x * z + w * y)
    r[..., 1, 0], r[..., 1, 1], r[..., 1, 2] = 2 * (x * y + w * z), 1 - 2 * (x**2 + z**2), 2 * (y * z - w * x)
    r[..., 2, 0], r[..., 2, 1], r[..., 2, 2] = 2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x**2 + y**2)
    return r


def _project_one_camera(means, quats, scales, viewmat, K, width, height, eps2d):
    """Screen means, conics and depths of all Gaussians for one camera (float64)."""
    cam = means @ viewmat[:3, :3].T + viewmat[:3, 3]
    x, y, z = cam[:, 0], cam[:, 1], cam[:, 2]
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    # Jacobian of the perspective map at a position clamped to 1.3x the field of view (gsplat)
    lim_x = (cx / fx + 0.15 * width / fx, (width - cx) / fx + 0.15 * width / fx)
    lim_y = (cy / fy + 0.15 * height / fy, (height - cy) / fy + 0.15 * height / fy)
    xc = z * torch.clamp(x / z, -lim_x[0], lim_x[1])
    yc = z * torch.clamp(y / z, -lim_y[0], lim_y[1])
    jac = torch.zeros(len(z), 2, 3, dtype=means.dtype)
    jac[:, 0, 0], jac[:, 0, 2] = fx / z, -fx * xc / z**2
    jac[:, 1, 1], jac[:, 1, 2] = fy / z, -fy * yc / z**2
    rot_scale = _rotation(quats) * scales[:, None, :]
    world_cov = rot_scale @ rot_scale.transpose(1, 2)
    cam_cov = viewmat[:3, :3] @ world_cov @ viewmat[:3, :3].T
    cov2d = jac @ cam_cov @ jac.transpose(1, 2) + eps2d * torch.eye(2, dtype=means.dtype)
    conic = torch.linalg.inv(cov2d)
    uv = torch.stack([fx * x / z + cx, fy * y / z + cy], dim=-1)
    return uv, conic, z


def render_reference(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    background: Tensor,
    *,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    pixels: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Colours (B, P, D), alpha (B, P, 1) and expected depth (B, P, 1) at pixels P (all by default).

    Inputs as in :func:`align4d_core.scene.render.rasterize` (float64 recommended). ``pixels`` is a
    (P,) tensor of flat indices row * width + col, to render a chunk of a large image.
    """
    n_cams = viewmats.shape[0]
    if pixels is None:
        pixels = torch.arange(width * height)
    px = (pixels % width).to(means.dtype) + 0.5
    py = torch.div(pixels, width, rounding_mode="floor").to(means.dtype) + 0.5
    out_colors, out_alpha, out_depth = [], [], []
    for cam in range(n_cams):
        pick = (lambda t, c=cam: t[c]) if means.dim() == 3 else (lambda t: t)
        m, q, s = pick(means), pick(quats), pick(scales)
        o = opacities[cam] if opacities.dim() == 2 else opacities
        col = colors[cam] if colors.dim() == 3 else colors
        uv, conic, z = _project_one_camera(m, q, s, viewmats[cam], Ks[cam], width, height, eps2d)
        order = torch.sort(z, stable=True).indices
        bg = background[cam] if background.dim() == 2 else background

        transmittance = torch.ones(len(pixels), dtype=means.dtype)
        accum = torch.zeros(len(pixels), col.shape[-1], dtype=means.dtype)
        accum_depth = torch.zeros(len(pixels), dtype=means.dtype)
        active = torch.ones(len(pixels), dtype=torch.bool)
        for g in order.tolist():
            if not (near_plane <= float(z[g].detach()) <= far_plane):
                continue
            dx, dy = uv[g, 0] - px, uv[g, 1] - py
            a, b, c = conic[g, 0, 0], conic[g, 0, 1], conic[g, 1, 1]
            sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
            alpha = torch.clamp(o[g] * torch.exp(-sigma), max=ALPHA_MAX)
            considered = active & (alpha >= ALPHA_MIN) & (sigma >= 0)
            next_t = transmittance * (1 - alpha)
            finished = considered & (next_t <= TRANSMITTANCE_MIN)
            adds = considered & ~finished
            weight = torch.where(adds, alpha * transmittance, 0.0)
            accum = accum + weight[:, None] * col[g]
            accum_depth = accum_depth + weight * z[g]
            transmittance = torch.where(adds, next_t, transmittance)
            active = active & ~finished
        alpha_out = 1 - transmittance
        out_colors.append(accum + transmittance[:, None] * bg)
        out_alpha.append(alpha_out[:, None])
        out_depth.append((accum_depth / alpha_out.clamp_min(1e-10))[:, None])
    return torch.stack(out_colors), torch.stack(out_alpha), torch.stack(out_depth)
