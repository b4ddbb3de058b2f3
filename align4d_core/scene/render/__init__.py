"""One renderer for align4d: gsplat on CUDA, our own differentiable rasterizer on CPU.

Both paths take the same tensors and return the same :class:`RenderOutput`, so the optimizer, ODA
and the evaluation never ask which one ran. :func:`rasterize` is the functional core (plain
tensors, gsplat's argument names); :func:`render` is the convenience entry on
:class:`~align4d_core.scene.gaussians.Gaussians` and :class:`~align4d_core.scene.cameras.Cameras`, composited on
white (DESIGN.md §4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from align4d_core.scene.cameras import Cameras
from align4d_core.scene.gaussians import Gaussians

Backend = Literal["auto", "cpu", "gsplat"]

__all__ = ["RenderOutput", "rasterize", "render", "resolve_backend"]


@dataclass
class RenderOutput:
    """What a render returns; B cameras, N Gaussians."""

    rgb: Tensor  # (B, H, W, D) composited over the background
    alpha: Tensor  # (B, H, W, 1) accumulated opacity
    depth: Tensor  # (B, H, W, 1) expected depth Σ wᵢ zᵢ / α (gsplat's "ED")
    means2d: Tensor  # (B, N, 2) screen positions; call .retain_grad() before backward for densification
    radii: Tensor  # (B, N, 2) int32 screen half-extents, 0 where a Gaussian is culled
    backend: str  # "cpu" or "gsplat"
    n_pairs: int | None = None  # (Gaussian, pixel) pairs visited by the CPU rasterizer

    @property
    def visible(self) -> Tensor:
        """(B, N) bool: the Gaussian reached at least one pixel's bounding box in that camera."""
        return (self.radii > 0).any(dim=-1)


def resolve_backend(backend: Backend, device: torch.device) -> str:
    if backend == "auto":
        return "gsplat" if device.type == "cuda" else "cpu"
    if backend == "gsplat" and device.type != "cuda":
        raise ValueError("the gsplat backend needs CUDA tensors; use backend='cpu' on this device")
    if backend not in ("cpu", "gsplat"):
        raise ValueError(f"unknown render backend {backend!r}; expected 'auto', 'cpu' or 'gsplat'")
    return backend


def _background(background: Tensor | float | tuple | None, channels: int, like: Tensor) -> Tensor:
    if background is None:
        return torch.zeros(channels, dtype=like.dtype, device=like.device)
    bg = torch.as_tensor(background, dtype=like.dtype, device=like.device)
    return bg.expand(channels).contiguous() if bg.dim() == 0 else bg


def rasterize(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    *,
    background: Tensor | float | tuple | None = None,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    backend: Backend = "auto",
    rows: Tensor | None = None,
) -> RenderOutput:
    """Render activated Gaussians into B cameras.

    Gaussians are (N, ·), seen by every camera, or (B, N, ·), one set per camera (e.g. the
    deformed state of each video frame). ``viewmats`` are (B, 4, 4) OpenCV world-to-camera
    matrices (:attr:`Cameras.viewmats`), ``Ks`` (B, 3, 3). ``colors`` are (N, D) or (B, N, D);
    ``background`` a (D,) colour (None: black, as gsplat). ``rows`` (sorted, distinct pixel rows;
    None: all) renders only those rows, each exactly as in the whole image: the outputs then hold
    len(rows) rows (ODA's lower bounds, method/vaod_bound.py). The CPU rasterizer skips the other
    rows; gsplat renders the whole image and keeps those rows.
    """
    which = resolve_backend(backend, means.device)
    bg = _background(background, colors.shape[-1], colors)
    if which == "gsplat":
        from align4d_core.scene.render.gsplat_backend import rasterize_gsplat

        out = rasterize_gsplat(
            means,
            quats,
            scales,
            opacities,
            colors,
            viewmats,
            Ks,
            width,
            height,
            bg,
            near_plane=near_plane,
            far_plane=far_plane,
            eps2d=eps2d,
        )
        if rows is not None:
            keep = rows.to(out.rgb.device)
            out.rgb, out.alpha, out.depth = (t.index_select(1, keep) for t in (out.rgb, out.alpha, out.depth))
        return out
    return _rasterize_cpu(
        means,
        quats,
        scales,
        opacities,
        colors,
        viewmats,
        Ks,
        width,
        height,
        bg,
        near_plane=near_plane,
        far_plane=far_plane,
        eps2d=eps2d,
        rows=rows,
    )


def _rasterize_cpu(
    means, quats, scales, opacities, colors, viewmats, Ks, width, height, bg, *, near_plane, far_plane, eps2d, rows
) -> RenderOutput:
    from align4d_core.scene.render import cpu
    from align4d_core.scene.render.projection import project

    n_cams = viewmats.shape[0]
    proj = project(
        means,
        quats,
        scales,
        opacities,
        viewmats,
        Ks,
        width,
        height,
        near_plane=near_plane,
        far_plane=far_plane,
        eps2d=eps2d,
    )
    n = proj.depths.shape[1]
    colors = colors.expand(n_cams, n, colors.shape[-1]) if colors.dim() == 2 else colors
    opacities = opacities.expand(n_cams, n) if opacities.dim() == 1 else opacities
    # depth rides along as one more colour channel, so the same compositing gives Σ wᵢ zᵢ
    channels = torch.cat([colors, proj.depths[..., None]], dim=-1)
    out, alpha, n_pairs = cpu.rasterize(
        proj.means2d,
        proj.cov2d,
        proj.conics,
        proj.depths,
        proj.radii,
        opacities,
        channels,
        torch.cat([bg, bg.new_zeros(1)]),
        width,
        height,
        rows=rows,
    )
    return RenderOutput(
        rgb=out[..., :-1],
        alpha=alpha,
        depth=out[..., -1:] / alpha.clamp_min(1e-10),
        means2d=proj.means2d,
        radii=proj.radii,
        backend="cpu",
        n_pairs=n_pairs,
    )


def render(
    gaussians: Gaussians,
    cameras: Cameras,
    *,
    background: Tensor | float | tuple | None = 1.0,
    backend: Backend = "auto",
    **kwargs,
) -> RenderOutput:
    """Render ``gaussians`` from every camera of ``cameras``, on white unless told otherwise."""
    cameras = cameras.to(device=gaussians.device, dtype=gaussians.dtype)
    return rasterize(
        gaussians.means,
        gaussians.rotations,
        gaussians.scales,
        gaussians.opacities,
        gaussians.colors,
        cameras.viewmats,
        cameras.Ks,
        cameras.width,
        cameras.height,
        background=background,
        backend=backend,
        **kwargs,
    )
