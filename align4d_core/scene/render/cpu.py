"""A differentiable Gaussian rasterizer in pure PyTorch, for machines without CUDA.

gsplat has no CPU path, so align4d brings its own, with gsplat's rules (see projection.py): per
pixel, Gaussians front to back, alpha = min(0.999, o·exp(-σ)), skipped below 1/255, and the pixel
finished before the Gaussian that would bring its transmittance to 1e-4.

How it stays fast on two cores:

* Work is organised in *strips*: one entry per (Gaussian, pixel row, run of S columns)
  that the Gaussian's alpha ≥ 1/255 ellipse touches. The ellipse is walked row by row (an exact
  x-interval per row), so few pixels outside it are visited, unlike square tiles, which visit
  several times more. Each strip is a dense run of S pixels, so per-pixel work is plain
  broadcast arithmetic on an (S, E) array, with no per-pixel gathers; only the E strips are
  sorted, by (camera, row, strip) group, keeping depth order within a group.
* The front-to-back transmittance of a pixel is a prefix sum of log(1 - α) over the entries of its
  group: a segmented cumulative sum along E, which the (S, E) layout makes a scan over contiguous
  memory (ten times faster than down the columns of (E, S)). It is accumulated in float64: over
  millions of pairs a float32 running sum drifts by 1e-2, which tiny test scenes never show.
* Colours are summed into (group, pixel, channel) rows, which is already the image's memory layout.
* The backward pass is written by hand (one more segmented suffix sum) instead of letting autograd
  keep every intermediate; the background and alpha outputs enter it as one more colour channel.
  Without gradients (ODA's sweeps) a forward-only path keeps none of its state.
* A render can be restricted to some pixel rows (``rows``): each row is composited exactly as in the
  full image, so ODA can sum a distance's error over a few rows, a lower bound of its MSE, before it
  decides whether the rest is worth rendering (method/vaod_bound.py).

``rasterize`` takes projected ellipses; :func:`align4d_core.scene.render.render` is the public entry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from align4d_core.scene.render.projection import ALPHA_MAX, ALPHA_MIN, TRANSMITTANCE_MIN

STRIP_WIDTHS = (4, 8, 16)
"""Columns per strip, chosen per render from the footprints' size (:func:`strip_width`)."""

_LOG_T_MIN = math.log(TRANSMITTANCE_MIN)
_BOUND_MARGIN = 1e-3
"""Extra width (pixels) around each footprint: the exact alpha test per pixel decides; this only
keeps rounding in the bounds from dropping a pixel that passes it."""


@dataclass
class Strips:
    """(Gaussian, row, strip) entries sorted by (camera, row, strip) group, depth order within."""

    gid: Tensor  # (E,) flat camera * N + gaussian
    group: Tensor  # (E,) flat (camera * H + row) * n_strips + strip
    row_centre: Tensor  # (E,) y of the row's pixel centres
    col_centre: Tensor  # (E,) x of the strip's first pixel centre
    first: Tensor  # (E,) index of the first entry of the same group
    last: Tensor  # (E,) index of the last entry of the same group
    strip: int  # columns per strip
    n_groups: int
    n_pixels_visited: int  # E * strip, for benchmarks


@torch.no_grad()
def footprint_strips(
    means2d: Tensor,
    cov2d: Tensor,
    opacities: Tensor,
    depths: Tensor,
    radii: Tensor,
    width: int,
    height: int,
    strip: int = 8,
    rows: Tensor | None = None,
) -> Strips:
    """Every strip of pixels that meets a visible Gaussian's alpha ≥ 1/255 ellipse.

    With level k = 2 ln(255 o), the ellipse is dᵀ Σ⁻¹ d ≤ k. Its rows span |dy| ≤ sqrt(k Σyy); on
    the row at dy it is centred at Σxy/Σyy · dy with half-width sqrt((k - dy²/Σyy)(Σxx - Σxy²/Σyy)).
    ``rows`` (sorted, distinct pixel rows; None: all) keeps only those rows; groups then count rows
    by their position in ``rows``, so the output holds len(rows) rows per camera. A row's entries,
    and their order, are the same as in the full image.
    """
    n_cams, n = depths.shape
    out_rows = height if rows is None else len(rows)
    n_strips = -(-width // strip)
    visible = (radii > 0).any(dim=-1).reshape(-1).nonzero().squeeze(1)
    visible = visible[torch.sort(depths.reshape(-1)[visible], stable=True).indices]

    mean = means2d.reshape(-1, 2)[visible].double()
    cov = cov2d.reshape(-1, 2, 2)[visible].double()
    level = 2.0 * torch.log(opacities.reshape(-1)[visible].double() * 255.0)
    sxx, syy = cov[:, 0, 0], cov[:, 1, 1]
    sxy = 0.5 * (cov[:, 0, 1] + cov[:, 1, 0])
    half_h = torch.sqrt((level * syy).clamp_min(0.0))
    row0 = torch.ceil(mean[:, 1] - half_h - 0.5 - _BOUND_MARGIN).clamp_min(0).long()
    row1 = torch.floor(mean[:, 1] + half_h - 0.5 + _BOUND_MARGIN).clamp_max(height - 1).long()

    # one entry per (Gaussian, pixel row)
    if rows is None:
        owner = _expand(row1 - row0 + 1)
        slot = row0[owner] + _offsets(owner)  # the row's place in the output: the row itself
        rows = slot
    else:
        rows = rows.to(device=row0.device, dtype=torch.long)
        first_slot = torch.searchsorted(rows, row0)
        owner = _expand(torch.searchsorted(rows, row1, right=True) - first_slot)
        slot = first_slot[owner] + _offsets(owner)
        rows = rows[slot]
    dy = rows.double() + 0.5 - mean[owner, 1]
    s_yy = syy[owner]
    centre = mean[owner, 0] + sxy[owner] / s_yy * dy
    schur = (sxx - sxy * sxy / syy)[owner].clamp_min(0.0)
    half_w = torch.sqrt((level[owner] - dy * dy / s_yy).clamp_min(0.0) * schur)
    col0 = torch.ceil(centre - half_w - 0.5 - _BOUND_MARGIN).clamp_min(0).long()
    col1 = torch.floor(centre + half_w - 0.5 + _BOUND_MARGIN).clamp_max(width - 1).long()
    strip0 = torch.div(col0, strip, rounding_mode="floor")
    strip1 = torch.div(col1, strip, rounding_mode="floor")
    n_in_row = torch.where(col1 >= col0, strip1 - strip0 + 1, 0)

    # one entry per (Gaussian, pixel row, strip)
    row_of = _expand(n_in_row)
    strips = strip0[row_of] + _offsets(row_of)
    gid = visible[owner][row_of]
    cam = torch.div(gid, n, rounding_mode="floor")
    group = (cam * out_rows + slot[row_of]) * n_strips + strips
    group, order = torch.sort(group.int(), stable=True)
    group = group.long()
    row_of = row_of[order]
    return Strips(
        gid=gid[order],
        group=group,
        row_centre=(rows[row_of].to(means2d.dtype) + 0.5),
        col_centre=(strips[order] * strip).to(means2d.dtype) + 0.5,
        first=_segment_starts(group),
        last=_segment_ends(group),
        strip=strip,
        n_groups=n_cams * out_rows * n_strips,
        n_pixels_visited=int(group.shape[0]) * strip,
    )


def strip_width(radii: Tensor) -> int:
    """Strips about as wide as a typical footprint: wide strips amortise the per-entry work of
    large Gaussians, narrow ones waste fewer pixels around small ones. Any width gives the same
    image; only the time changes (measured by benchmarks/render.py)."""
    widths = radii[..., 0][radii[..., 0] > 0]
    if widths.numel() == 0:
        return STRIP_WIDTHS[0]
    typical = float(widths.float().median())
    return 4 if typical <= 8 else (8 if typical <= 16 else 16)


def _expand(counts: Tensor) -> Tensor:
    """Owner index of each expanded element: [0]*counts[0] + [1]*counts[1] + ..."""
    return torch.repeat_interleave(torch.arange(len(counts), device=counts.device), counts.clamp_min(0))


def _offsets(owner: Tensor) -> Tensor:
    """0, 1, 2, ... restarting at each new owner (owners are grouped)."""
    return _arange_like(owner) - _segment_starts(owner)


def _arange_like(t: Tensor) -> Tensor:
    return torch.arange(len(t), device=t.device)


def _segment_starts(keys: Tensor) -> Tensor:
    """For each element of grouped ``keys``, the index of the first element of its group."""
    new = torch.ones_like(keys, dtype=torch.bool)
    new[1:] = keys[1:] != keys[:-1]
    return torch.cummax(torch.where(new, _arange_like(keys), 0), dim=0).values


def _segment_ends(keys: Tensor) -> Tensor:
    """For each element of grouped ``keys``, the index of the last element of its group."""
    return len(keys) - 1 - _segment_starts(keys.flip(0)).flip(0)


def _sum_before(values: Tensor, strips: Strips) -> Tensor:
    """Down each column of (S, E) ``values``: the sum over earlier entries of the same group.

    A float64 running sum along E (contiguous memory, hence the (S, E) layout), minus its value
    where the group starts.
    """
    values = values.double()
    exclusive = torch.cumsum(values, dim=1) - values
    return exclusive - exclusive.index_select(1, strips.first)


def _sum_after(values: Tensor, strips: Strips) -> Tensor:
    """Down each column of (S, E) ``values``: the sum over later entries of the same group."""
    running = torch.cumsum(values.double(), dim=1)
    return running.index_select(1, strips.last) - running


class _Geometry:
    """Per-entry ellipse terms and per-pixel offsets, shared by forward and backward."""

    def __init__(self, strips: Strips, means2d: Tensor, conics: Tensor, opacities: Tensor, width: int):
        gid = strips.gid
        mean = means2d.reshape(-1, 2).index_select(0, gid)
        self.a, self.b, self.c = conics.reshape(-1, 3).index_select(0, gid).unbind(-1)
        self.opacity = opacities.reshape(-1).index_select(0, gid)
        self.dy = mean[:, 1] - strips.row_centre  # gsplat's delta: mean minus pixel centre
        cols = torch.arange(strips.strip, dtype=means2d.dtype, device=means2d.device)[:, None]
        self.dx = (mean[:, 0] - strips.col_centre) - cols  # (S, E)
        overhang = width % strips.strip != 0
        self.in_image = (strips.col_centre + cols) < width if overhang else None  # last strip

    def alpha(self) -> tuple[Tensor, Tensor, Tensor]:
        """(S, E) alpha, gsplat's pass test (α ≥ 1/255, σ ≥ 0, in the image), 0.999 clamp."""
        dy = self.dy
        sigma = (0.5 * self.a * self.dx + self.b * dy) * self.dx + 0.5 * self.c * dy * dy
        raw = self.opacity * torch.exp(-sigma)
        alpha = raw.clamp_max(ALPHA_MAX)
        passes = (alpha >= ALPHA_MIN) & (sigma >= 0)
        if self.in_image is not None:
            passes &= self.in_image
        return alpha, passes, raw > ALPHA_MAX


def _composite(strips: Strips, means2d, conics, opacities, colors, background, width: int, for_backward: bool):
    """Front-to-back compositing of every strip; returns (G, S, D) colours, (G, S) alpha and, when
    ``for_backward``, the tensors the backward pass needs (else None, so nothing is kept)."""
    geo = _Geometry(strips, means2d, conics, opacities, width)
    alpha, passes, clamped = geo.alpha()
    log_1m = torch.where(passes, torch.log1p(-alpha), 0.0)
    log_t = _sum_before(log_1m, strips).to(alpha.dtype)
    included = passes & (log_t + log_1m > _LOG_T_MIN)
    t_before = torch.exp(log_t)
    weight = torch.where(included, alpha * t_before, 0.0)

    # colours per (entry, pixel, channel), summed into (group, pixel, channel): row-contiguous
    # in memory, and already the (camera, row, strip, column) layout of the image
    entry_colors = colors.reshape(-1, colors.shape[-1]).index_select(0, strips.gid)
    out = colors.new_zeros(strips.n_groups, strips.strip, colors.shape[-1])
    out.index_add_(0, strips.group, weight.t()[:, :, None] * entry_colors[:, None, :])
    log_t_final = log_1m.new_zeros(strips.n_groups, strips.strip)
    log_t_final.index_add_(0, strips.group, torch.where(included, log_1m, 0.0).t())
    t_final = torch.exp(log_t_final)  # (G, S); per-pixel sums, so float32 is exact enough
    out = out + t_final[:, :, None] * background
    saved = (geo, (alpha, t_before, weight, included & ~clamped)) if for_backward else None
    return out, 1.0 - t_final, saved


class _Rasterize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means2d, conics, opacities, colors, background, strips: Strips, width: int):
        out, alpha, (geo, saved) = _composite(strips, means2d, conics, opacities, colors, background, width, True)
        # the per-entry geometry is kept rather than gathered again in backward: it holds no
        # input or output, only (S, E) and (E,) intermediates computed without autograd
        ctx.strips, ctx.geo, ctx.background, ctx.shape = strips, geo, background, means2d.shape[:-1]
        ctx.save_for_backward(colors, *saved)
        return out, alpha

    @staticmethod
    def backward(ctx, grad_out, grad_alpha):
        colors, alpha, t_before, weight, live = ctx.saved_tensors
        strips, geo = ctx.strips, ctx.geo
        # With T_final = 1 - Σ wⱼ, the background and the alpha output act as one more colour
        # channel, constantly 1, with gradient dL/dalpha - dL/dout · background.
        grad_ones = grad_alpha - (grad_out * ctx.background).sum(-1)
        grad_ext = torch.cat([grad_out, grad_ones[:, :, None]], dim=-1)  # (G, S, D + 1)
        entry_colors = colors.reshape(-1, colors.shape[-1]).index_select(0, strips.gid)
        colors_ext = torch.cat([entry_colors, entry_colors.new_ones(len(entry_colors), 1)], dim=-1)
        grad_entry = grad_ext.index_select(0, strips.group)  # (E, S, D + 1)
        grad_dot_color = torch.bmm(grad_entry, colors_ext[:, :, None])[:, :, 0].t().contiguous()  # (S, E)

        after = _sum_after(grad_dot_color * weight, strips).to(alpha.dtype)
        grad_a = torch.where(live, t_before * grad_dot_color - after / (1.0 - alpha), 0.0)

        grad_colors = torch.zeros_like(colors.reshape(-1, colors.shape[-1]))
        weight_t = weight.t().contiguous()[:, None, :]  # (E, 1, S)
        # the whole (E, S, D + 1) block (a column slice would be copied first), then drop the ones
        grad_colors.index_add_(0, strips.gid, torch.bmm(weight_t, grad_entry)[:, 0, :-1])

        # σ = ½a dx² + b dx dy + ½c dy², summed over the strip's pixels per entry
        grad_sigma = -alpha * grad_a
        s0 = grad_sigma.sum(0)
        grad_sigma_dx = grad_sigma * geo.dx
        s1 = grad_sigma_dx.sum(0)
        s2 = (grad_sigma_dx * geo.dx).sum(0)
        dy = geo.dy
        per_entry = torch.stack(
            [
                geo.a * s1 + geo.b * dy * s0,
                geo.c * dy * s0 + geo.b * s1,
                0.5 * s2,
                dy * s1,
                0.5 * dy * dy * s0,
                (grad_a * alpha).sum(0) / geo.opacity,
            ],
            dim=-1,
        )
        per_gaussian = torch.zeros(grad_colors.shape[0], 6, dtype=per_entry.dtype, device=per_entry.device)
        per_gaussian.index_add_(0, strips.gid, per_entry)
        shape = ctx.shape
        return (
            per_gaussian[:, 0:2].reshape(shape + (2,)),
            per_gaussian[:, 2:5].reshape(shape + (3,)),
            per_gaussian[:, 5].reshape(shape),
            grad_colors.reshape(colors.shape),
            None,
            None,
            None,
        )


def rasterize(
    means2d: Tensor,
    cov2d: Tensor,
    conics: Tensor,
    depths: Tensor,
    radii: Tensor,
    opacities: Tensor,
    colors: Tensor,
    background: Tensor,
    width: int,
    height: int,
    strip: int | None = None,
    rows: Tensor | None = None,
) -> tuple[Tensor, Tensor, int]:
    """Composite (B, N) projected Gaussians with (B, N, D) colours over a (D,) background.

    Returns colours (B, H, W, D), alpha (B, H, W, 1) and the number of pixels visited (for
    benchmarks). Gradients flow to means2d, conics, opacities and colours. With ``rows`` (sorted
    distinct pixel rows) only those rows are rendered: H becomes len(rows).
    """
    n_cams = depths.shape[0]
    strips = footprint_strips(
        means2d.detach(),
        cov2d.detach(),
        opacities.detach(),
        depths.detach(),
        radii,
        width,
        height,
        strip or strip_width(radii),
        rows,
    )
    inputs = (means2d, conics, opacities, colors, background)
    if torch.is_grad_enabled() and any(t.requires_grad for t in inputs):
        out, alpha = _Rasterize.apply(*inputs, strips, width)
    else:
        out, alpha, _ = _composite(strips, *inputs, width, for_backward=False)
    # (G, S, .) with G = (camera, row, strip): the image rows, padded to whole strips
    out_rows = height if rows is None else len(rows)
    padded = strips.n_groups // (n_cams * out_rows) * strips.strip
    out = out.reshape(n_cams, out_rows, padded, colors.shape[-1])[:, :, :width]
    alpha = alpha.reshape(n_cams, out_rows, padded, 1)[:, :, :width]
    return out, alpha, strips.n_pixels_visited
