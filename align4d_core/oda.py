"""Object Distance Alignment (Section III-B): the distances at which the 4D object meets its priors.

* VAOD (eq. 4) is where the front render of the 3D input matches the first video frame: the global
  minimum of the MSE over a sweep of object distances. Too close, the object overflows the frame
  (low, flat error); too far, it shrinks to background (the error climbs to its ceiling); the true
  distance sits at the bottom between.
* MAOD (eq. 5, 11) is where the multiview diffusion prior is most at home: the SDS probe of the
  renders at four orthogonal azimuths, with one fixed noise and τ ∈ {700, 800, 900}, as a function
  of distance. Its global minimum lies to the right, where the object vanishes into background
  (Section V-A); MAOD is the local minimum strictly left of VAOD.

Both searches return their whole curve, for the plots of Fig. 5/6. The distances are the
candidates d_min, d_min + step, ... ≤ d_max of Section IV-A.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor

from .cameras import FOVY_DEG, orbit_cameras
from .config import SearchConfig
from .gaussians import Gaussians
from .guidance.base import Guidance, ViewDelta
from .render import render

FALLBACK_RULE = "no local minimum of the probe left of VAOD: MAOD = VAOD"
"""What MAOD falls back to when the probe curve has no local minimum strictly left of VAOD. VAOD is
the distance the object is known to be seen at; the paper's alternatives (a near-zero distance, the
background-dominated global minimum) are the failure cases of Fig. 11 (a) and (d)."""


@dataclass
class SearchResult:
    """VAOD, MAOD and the curves they were read from."""

    vaod: float
    maod: float
    distances: list[float]
    vaod_mse: list[float]
    vaod_mse_masked: list[float] | None
    maod_sds: list[float] | None
    maod_rule: str  # how MAOD was chosen
    seconds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


def candidate_distances(config: SearchConfig) -> Tensor:
    """d_min, d_min + step, ..., up to d_max (Section IV-A: 0.00001 … 3.00001 by 0.05, 61 values)."""
    count = int(round((config.d_max - config.d_min) / config.d_step)) + 1
    # rounded so that 0.05001 prints as such, not as 0.050010000000000006
    return torch.tensor([round(config.d_min + config.d_step * k, 10) for k in range(count)], dtype=torch.float64)


def orbit_renders(gaussians: Gaussians, distances: Tensor, width: int, height: int, fovy_deg: float,
                  batch: int, azimuth: float = 0.0) -> Tensor:  # fmt: skip
    """RGB (D, H, W, 3) of the object seen from ``azimuth`` (elevation 0) at each distance."""
    out = []
    with torch.no_grad():
        for start in range(0, len(distances), batch):
            chunk = distances[start : start + batch]
            cams = orbit_cameras(0.0, azimuth, chunk, width=width, height=height, fovy_deg=fovy_deg)
            out.append(render(gaussians, cams).rgb)
    return torch.cat(out)


def search_vaod(
    gaussians: Gaussians,
    frame: Tensor,
    mask: Tensor | None,
    config: SearchConfig = SearchConfig(),
    fovy_deg: float = FOVY_DEG,
) -> tuple[float, Tensor, Tensor, Tensor | None]:
    """Eq. 4: the distance whose front render of the 3D input best matches the first frame.

    ``frame`` is (H, W, 3) on white, ``mask`` (H, W, 1) or None. Returns VAOD, the candidate
    distances, the MSE curve and, with a mask, the masked curve (the mean squared error over the
    pixels covered by the video's mask or the render's alpha, which background cannot dilute).
    The curve that decides is the masked one when ``config.masked``.
    """
    distances = candidate_distances(config)
    height, width = frame.shape[:2]
    mse, masked = [], []
    with torch.no_grad():
        for start in range(0, len(distances), config.batch):
            chunk = distances[start : start + config.batch]
            cams = orbit_cameras(0.0, 0.0, chunk, width=width, height=height, fovy_deg=fovy_deg)
            out = render(gaussians, cams)
            error = (out.rgb - frame.to(out.rgb)).pow(2).mean(dim=-1)  # (D, H, W)
            mse.append(error.mean(dim=(1, 2)))
            if mask is not None:
                covered = ((mask[..., 0] > 0.5)[None] | (out.alpha[..., 0] > 0.5)).to(error.dtype)
                masked.append((error * covered).sum(dim=(1, 2)) / covered.sum(dim=(1, 2)).clamp_min(1.0))
    mse_curve = torch.cat(mse).double()
    masked_curve = torch.cat(masked).double() if masked else None
    deciding = masked_curve if (config.masked and masked_curve is not None) else mse_curve
    return float(distances[int(torch.argmin(deciding))]), distances, mse_curve, masked_curve


def probe_curve(
    guidance: Guidance,
    gaussians: Gaussians,
    distances: Tensor,
    config: SearchConfig = SearchConfig(),
    fovy_deg: float = FOVY_DEG,
    frame_index: int = 0,
) -> Tensor:
    """Eq. 5 (eq. 11 for fixed-distance models): the SDS probe at each candidate distance.

    The renders at every distance and probe azimuth share one noise drawn once from
    ``config.seed``, so that the curve varies with the distance alone. The condition is video frame
    ``frame_index`` (I₁), and each view's pose is its azimuth relative to the front view.
    """
    azimuths = guidance.probe_azimuths
    noise = guidance.probe_noise(torch.Generator().manual_seed(config.seed))
    size = config.probe_size
    values = torch.zeros(len(distances), dtype=torch.float64)
    for azimuth in azimuths:
        renders = orbit_renders(gaussians, distances, size, size, fovy_deg, config.batch, azimuth=azimuth)
        for start in range(0, len(distances), config.batch):
            chunk = renders[start : start + config.batch]
            batch = len(chunk)
            delta = ViewDelta(torch.zeros(batch), torch.full((batch,), float(azimuth)), torch.zeros(batch))
            index = torch.full((batch,), frame_index, dtype=torch.long)
            with torch.no_grad():
                value = guidance.probe(chunk, index, delta, tuple(config.timesteps), noise)
            values[start : start + batch] += value.double().cpu()
    return values / len(azimuths)


def select_maod(distances: Tensor, curve: Tensor, vaod: float) -> tuple[float, str]:
    """The local minimum of the probe curve strictly left of VAOD (Section III-B, V-A).

    A local minimum is a candidate lower than its left neighbour and no higher than its right one
    (so a flat bottom counts once, at its left end). Among those left of VAOD the lowest is chosen;
    with none, MAOD falls back to VAOD (:data:`FALLBACK_RULE`). The global minimum to the right of
    VAOD, where renders turn to background, is never chosen.
    """
    left = [
        i
        for i in range(1, len(distances) - 1)
        if float(distances[i]) < vaod - 1e-9 and curve[i] < curve[i - 1] and curve[i] <= curve[i + 1]
    ]
    if not left:
        return vaod, FALLBACK_RULE
    best = min(left, key=lambda i: float(curve[i]))
    return float(distances[best]), "lowest local minimum of the probe strictly left of VAOD"


def search(
    gaussians: Gaussians,
    frame: Tensor,
    mask: Tensor | None,
    guidance: Guidance | None,
    config: SearchConfig = SearchConfig(),
    fovy_deg: float = FOVY_DEG,
) -> SearchResult:
    """VAOD, then MAOD when the guidance backend has a probe (else MAOD = VAOD, DESIGN.md §5)."""
    started = time.perf_counter()
    vaod, distances, mse, masked = search_vaod(gaussians, frame, mask, config, fovy_deg)
    seconds = {"vaod": time.perf_counter() - started}
    if guidance is None or not guidance.probe_azimuths:
        name = guidance.name if guidance is not None else "none"
        return SearchResult(vaod, vaod, distances.tolist(), mse.tolist(), None if masked is None else masked.tolist(),
                            None, f"guidance {name!r} has no probe: MAOD = VAOD", seconds)  # fmt: skip
    started = time.perf_counter()
    guidance.set_frames(frame[None])  # the probe is conditioned on the first frame, I₁
    curve = probe_curve(guidance, gaussians, distances, config, fovy_deg)
    maod, rule = select_maod(distances, curve, vaod)
    seconds["maod"] = time.perf_counter() - started
    return SearchResult(vaod, maod, distances.tolist(), mse.tolist(), None if masked is None else masked.tolist(),
                        curve.tolist(), rule, seconds)  # fmt: skip
