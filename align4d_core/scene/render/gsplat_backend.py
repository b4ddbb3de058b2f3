"""The CUDA path: ``gsplat.rasterization`` with the settings that match the CPU rasterizer.

Non-packed mode keeps per-(camera, Gaussian) statistics in (B, N) layout, like the CPU path;
"RGB+ED" gives the expected depth the same way. One set of Gaussians per camera is passed to gsplat
as a batch dimension with one camera each.
"""

from __future__ import annotations

from torch import Tensor

from align4d_core.scene.render import RenderOutput


def rasterize_gsplat(
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
    near_plane: float,
    far_plane: float,
    eps2d: float,
) -> RenderOutput:
    from gsplat import rasterization

    n_cams = viewmats.shape[0]
    per_camera = means.dim() == 3
    if per_camera:
        # batch dimension = camera: Gaussians (B, N, .), one camera each (B, 1, 4, 4)
        n = means.shape[1]
        colors = colors.expand(n_cams, n, colors.shape[-1]) if colors.dim() == 2 else colors
        opacities = opacities.expand(n_cams, n) if opacities.dim() == 1 else opacities
        viewmats, Ks = viewmats[:, None], Ks[:, None]
        backgrounds = background.expand(n_cams, 1, background.shape[-1])
    else:
        backgrounds = background.expand(n_cams, background.shape[-1])
    render_colors, render_alphas, meta = rasterization(
        means,
        quats,
        scales,
        opacities,
        colors,
        viewmats,
        Ks,
        width,
        height,
        near_plane=near_plane,
        far_plane=far_plane,
        eps2d=eps2d,
        packed=False,
        backgrounds=backgrounds.contiguous(),
        render_mode="RGB+ED",
        sh_degree=None,
    )
    means2d, radii = meta["means2d"], meta["radii"]
    if per_camera:
        render_colors, render_alphas = render_colors[:, 0], render_alphas[:, 0]
        means2d, radii = means2d[:, 0], radii[:, 0]
    if radii.dim() == means2d.dim() - 1:  # gsplat < 1.5 gave one radius per Gaussian
        radii = radii[..., None].expand(radii.shape + (2,))
    return RenderOutput(
        rgb=render_colors[..., :-1],
        alpha=render_alphas,
        depth=render_colors[..., -1:],
        means2d=means2d,
        radii=radii.int(),
        backend="gsplat",
    )
