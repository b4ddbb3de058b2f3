"""VAOD's sweep (eq. 4) without rendering the distances that provably cannot be the minimum.

The MSE of a distance is a mean of per-pixel errors e_p ≥ 0, and the renderer composites every
pixel row on its own (``render(..., rows=...)`` gives each row exactly as the whole image does).
So the error summed over some rows, divided by all P pixels, is a lower bound of the distance's
MSE, and rendering more rows only adds to that sum: no work is thrown away. The sweep renders the
rows in ``PHASES`` interleaved phases (rows ≡ r mod 8, r in bit-reversed order, so that every
phase spreads over the whole image): first one phase for every candidate, then, round by round,
it completes the most promising distance (the lowest mean over its rendered rows) and advances the
others one phase, dropping every distance whose lower bound already exceeds the best complete MSE.
Near distances, where the camera sits inside the object and each render visits about a million
(Gaussian, pixel) pairs, fall out after one phase in practice.

The masked MSE (``SearchConfig.masked``) is Σ e_p c_p / max(Σ c_p, 1) over the covered pixels c
(video mask or render alpha > 0.5); with the rows rendered so far it is bounded below by
Σ' e_p c_p / max(Σ' c_p + unrendered pixels, 1), counting every unrendered pixel as covered.

What is exact: every distance that could still be the argmin is rendered whole, in float32 like
any other render, and the ones within ``TIE_MARGIN`` of the best are rendered again in float64
and decided by those values, so that a float32 rounding cannot pick another candidate than the
float64 sweep. A distance is dropped only when its float32 bound exceeds the best float32 MSE by
more than ``TIE_MARGIN``, over ten times the float32-vs-float64 gap of a whole-image MSE measured
on the sample. Dropped distances have no value in the returned curves (NaN):
their MSE was never computed, only shown to be above the minimum's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from align4d_core.scene.cameras import orbit_cameras
from align4d_core.scene.gaussians import Gaussians
from align4d_core.scene.render import render

PHASES = 8
"""Interleaved row phases of a render: after the first, a distance costs 1/8 of a whole render
until it either drops out or has to be rendered whole (then no more than a whole render)."""
PHASE_ORDER = (0, 4, 2, 6, 1, 5, 3, 7)
"""Bit-reversed, so that any first k phases sample the image evenly."""
TIE_MARGIN = 1e-4
"""MSE units (colours in [0, 1]): what separates "provably worse" from "might be the minimum once
rounding is accounted for". The float32 and float64 renders' whole-image MSEs differed by at most
9e-6 on the default sample's items and off-grid renders of them at 128 px (1.3e-6 at the tests'
48 px, tests/test_oda.py); the argument needs less than half the margin. It still drops the near
distances, whose MSE lies above the minimum's by 1e-2 and more."""


@dataclass
class _Sums:
    """Per distance, the error summed over the rows rendered so far."""

    error: Tensor  # (D,) Σ e_p, float64
    masked_error: Tensor  # (D,) Σ e_p c_p
    covered: Tensor  # (D,) Σ c_p
    phases: Tensor  # (D,) long, phases rendered (PHASES: the whole image)


def _phase_rows(height: int, phases: int) -> list[Tensor]:
    order = PHASE_ORDER if phases == PHASES else tuple(range(phases))
    return [torch.arange(r, height, phases) for r in order]


def _errors(out_rgb: Tensor, out_alpha: Tensor, frame: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """Per camera: Σ e_p, Σ e_p c_p and Σ c_p over the rendered rows (``frame``/``mask`` cut to them)."""
    error = (out_rgb - frame.to(out_rgb)).pow(2).mean(dim=-1)  # (B, R, W), as search_vaod always did
    total = error.double().sum(dim=(1, 2))
    if mask is None:
        return total, torch.zeros_like(total), torch.zeros_like(total)
    covered = ((mask[..., 0] > 0.5)[None] | (out_alpha[..., 0] > 0.5)).to(error.dtype)
    return total, (error * covered).double().sum(dim=(1, 2)), covered.double().sum(dim=(1, 2))


def _advance(
    gaussians: Gaussians,
    frame: Tensor,
    mask: Tensor | None,
    distances: Tensor,
    which: Tensor,
    until: Tensor,
    sums: _Sums,
    rows: list[Tensor],
    fovy_deg: float,
    batch: int,
) -> None:
    """Render distances ``which`` from their next phase up to phase ``until`` (per distance),
    batching the ones that render the same rows."""
    height, width = frame.shape[:2]
    keys = sums.phases[which] * (PHASES + 1) + until[which]
    for key in torch.unique(keys).tolist():
        start, stop = divmod(key, PHASES + 1)
        chosen = which[keys == key]
        picked = torch.sort(torch.cat(rows[start:stop])).values
        for first in range(0, len(chosen), batch):
            index = chosen[first : first + batch]
            cams = orbit_cameras(0.0, 0.0, distances[index], width=width, height=height, fovy_deg=fovy_deg)
            with torch.no_grad():
                out = render(gaussians, cams, rows=picked.to(gaussians.device))
            on_rows = picked.to(frame.device)
            total, masked_total, covered = _errors(
                out.rgb, out.alpha, frame[on_rows], None if mask is None else mask[on_rows]
            )
            sums.error[index] += total.cpu()
            sums.masked_error[index] += masked_total.cpu()
            sums.covered[index] += covered.cpu()
        sums.phases[chosen] = stop


def _values(sums: _Sums, pixels: int, rendered: Tensor, masked: bool) -> tuple[Tensor, Tensor]:
    """(lower bound, mean over the rendered pixels) of the deciding curve, per distance."""
    if masked:
        unrendered = pixels - rendered
        bound = sums.masked_error / (sums.covered + unrendered).clamp_min(1.0)
        return bound, sums.masked_error / sums.covered.clamp_min(1.0)
    return sums.error / pixels, sums.error / rendered.clamp_min(1.0)


def float64_mse(
    gaussians: Gaussians, frame: Tensor, mask: Tensor | None, distances: Tensor, fovy_deg: float
) -> tuple[Tensor, Tensor | None]:
    """Whole-image MSE and masked MSE at ``distances``, rendered in float64 (the tie-break).

    On the CPU renderer always: gsplat computes in float32 only.
    """
    height, width = frame.shape[:2]
    cams = orbit_cameras(0.0, 0.0, distances, width=width, height=height, fovy_deg=fovy_deg, dtype=torch.float64)
    with torch.no_grad():
        out = render(gaussians.to("cpu", torch.float64), cams, backend="cpu")
    mask = None if mask is None else mask.cpu()
    mse, masked, covered = _errors(out.rgb, out.alpha, frame.cpu().double(), mask)
    pixels = height * width
    return mse / pixels, None if mask is None else masked / covered.clamp_min(1.0)


def sweep(
    gaussians: Gaussians,
    frame: Tensor,
    mask: Tensor | None,
    distances: Tensor,
    masked: bool,
    fovy_deg: float,
    batch: int,
    full: bool = False,
) -> tuple[int, Tensor, Tensor | None, Tensor]:
    """Eq. 4's argmin over ``distances``, the curves (NaN where a distance was dropped) and, for the
    dropped distances, the lower bound of the deciding curve that ruled them out (NaN elsewhere):
    what a plot can show in their place.

    ``masked`` says which curve decides (it needs ``mask``); ``full`` renders every distance whole
    (the complete curves, for the plots of Fig. 5/6). On CUDA, where gsplat renders whole images
    anyway, every distance is rendered whole in one phase.
    """
    masked = masked and mask is not None
    height, width = frame.shape[:2]
    pixels = height * width
    phases = 1 if gaussians.device.type == "cuda" else min(PHASES, height)
    rows = _phase_rows(height, phases)
    count = len(distances)
    zeros = torch.zeros(count, dtype=torch.float64)
    sums = _Sums(zeros.clone(), zeros.clone(), zeros.clone(), torch.zeros(count, dtype=torch.long))
    every = torch.arange(count)
    row_counts = torch.tensor([0] + [len(r) for r in rows]).cumsum(0).double()

    def advance(which: Tensor, until: Tensor) -> None:
        _advance(gaussians, frame, mask, distances, which, until, sums, rows, fovy_deg, batch)

    if full:
        advance(every, torch.full((count,), phases))
    else:
        advance(every, torch.ones(count, dtype=torch.long))
    while True:
        complete = sums.phases == phases
        bound, estimate = _values(sums, pixels, row_counts[sums.phases], masked)
        best = float(bound[complete].min()) if complete.any() else float("inf")
        alive = ~complete & (bound <= best + TIE_MARGIN)
        if not alive.any():
            break
        live = every[alive]
        promising = live[int(torch.argmin(estimate[live]))]
        until = sums.phases.clone()
        if float(estimate[promising]) < best:
            until[promising] = phases  # the likeliest new minimum: render it whole
            advance(promising[None], until)
        else:
            until[live] += 1
            advance(live, until)

    complete = sums.phases == phases
    bound, _ = _values(sums, pixels, row_counts[sums.phases], masked)
    bound_curve = torch.where(complete, float("nan"), bound)
    error_curve = torch.where(complete, sums.error / pixels, float("nan"))
    masked_curve = None
    if mask is not None:
        masked_curve = torch.where(complete, sums.masked_error / sums.covered.clamp_min(1.0), float("nan"))
    deciding = masked_curve if masked else error_curve
    best = float(deciding[complete].min())
    contenders = every[complete & (deciding <= best + TIE_MARGIN)]
    if len(contenders) > 1:
        exact, exact_masked = float64_mse(gaussians, frame, mask, distances[contenders], fovy_deg)
        error_curve[contenders] = exact
        if masked_curve is not None:
            masked_curve[contenders] = exact_masked
        deciding = masked_curve if masked else error_curve
    return int(contenders[int(torch.argmin(deciding[contenders]))]), error_curve, masked_curve, bound_curve
