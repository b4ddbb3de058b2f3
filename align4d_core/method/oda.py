"""Object Distance Alignment (Section III-B): the distances at which the 4D object meets its priors.

* VAOD (eq. 4) is where the front render of the 3D input matches the first video frame: the global
  minimum of the MSE over a sweep of object distances. Too close, the object overflows the frame
  (low, flat error); too far, it shrinks to background (the error climbs to its ceiling); the true
  distance sits at the bottom between.
* MAOD (eq. 5, 11) is where the multiview diffusion prior is most at home: the SDS probe of the
  renders at four orthogonal azimuths, with one fixed noise and τ ∈ {700, 800, 900}, as a function
  of distance. Its global minimum lies to the right, where the object vanishes into background
  (Section V-A); MAOD is a local minimum strictly left of VAOD. Which one (:func:`select_maod`):
  the most prominent among the distances at which the whole object fits in every probe view, since
  nearer, the camera is inside or on top of the object and the saturated render can dip the curve
  for no reason the prior knows (Fig. 11a).

Both searches return their whole curve, for the plots of Fig. 5/6. The distances are the
candidates d_min, d_min + step, ... ≤ d_max of Section IV-A.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor

from align4d_core.config import SearchConfig
from align4d_core.guidance.base import Guidance, ViewDelta
from align4d_core.method.vaod_bound import sweep
from align4d_core.scene.cameras import FOVY_DEG, orbit_cameras
from align4d_core.scene.gaussians import Gaussians
from align4d_core.scene.render import render

FALLBACK_RULE = "no local minimum of the probe left of VAOD: MAOD = VAOD"
"""What MAOD falls back to when the probe curve has no local minimum strictly left of VAOD (where
the object fits the view). VAOD is the distance the object is known to be seen at; the alternatives
(a near-zero distance, the background-dominated global minimum) are the failure cases of Fig. 11
(a) and (d). Falling back is itself Fig. 11 (c)'s case (MAOD = VAOD, the prior's distance not
found), so a run that falls back says so in its row of the results table (``maod_fallback``)."""
SEARCH_PARTS = ("vaod", "maod")
"""The timed parts of the search (``SearchResult.seconds``), each a column of the cost table."""
MAOD_RULES = ("prominent", "lowest")
PROBE_RADII = ("zero", "relative")
FIT_FRACTION = 0.99
"""Share of the 3D input's Gaussian centres that must lie inside a probe view's frustum (in front of
the camera, within the field of view) for the object to count as fitting the view: a few stray
Gaussians must not veto a distance."""


@dataclass
class SearchResult:
    """VAOD, MAOD and the curves they were read from."""

    vaod: float
    maod: float
    distances: list[float]
    vaod_mse: list[float | None]  # None: not rendered, provably above the minimum (method/vaod_bound.py)
    vaod_mse_masked: list[float | None] | None
    maod_sds: list[float] | None
    maod_rule: str  # how MAOD was chosen
    seconds: dict[str, float] = field(default_factory=dict)
    maod_fallback: bool = False  # no local minimum found: MAOD = VAOD (Fig. 11c)
    maod_fits: list[bool] | None = None  # per distance: the object fits every probe view
    # per distance left out of the VAOD curves: the lower bound of the deciding curve that ruled it out
    vaod_bound: list[float | None] | None = None

    def to_json(self) -> dict:
        return asdict(self)


def candidate_distances(config: SearchConfig) -> Tensor:
    """d_min, d_min + step, ..., up to d_max (Section IV-A: 0.00001 … 3.00001 by 0.05, 61 values)."""
    count = int(round((config.d_max - config.d_min) / config.d_step)) + 1
    # rounded so that 0.05001 prints as such, not as 0.050010000000000006
    return torch.tensor([round(config.d_min + config.d_step * k, 10) for k in range(count)], dtype=torch.float64)


def orbit_renders(
    gaussians: Gaussians, distances: Tensor, width: int, height: int, fovy_deg: float, batch: int, azimuth: float = 0.0
) -> Tensor:
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

    With ``config.vaod_curve = "bounded"`` (the default) distances whose MSE provably lies above the
    minimum are not rendered whole and hold NaN in both curves (:mod:`.vaod_bound`); ``"full"``
    renders every distance, for complete curves. The argmin is the same either way: that of a
    one-at-a-time float64 sweep, near-ties being decided by float64 renders.
    """
    vaod, distances, mse_curve, masked_curve, _ = _sweep_vaod(gaussians, frame, mask, config, fovy_deg)
    return vaod, distances, mse_curve, masked_curve


def _sweep_vaod(
    gaussians: Gaussians, frame: Tensor, mask: Tensor | None, config: SearchConfig, fovy_deg: float
) -> tuple[float, Tensor, Tensor, Tensor | None, Tensor]:
    """:func:`search_vaod` and, for the distances it left out, the lower bounds that ruled them out."""
    distances = candidate_distances(config)
    index, mse_curve, masked_curve, bound_curve = sweep(
        gaussians, frame, mask, distances, config.masked, fovy_deg, config.batch, full=config.vaod_curve == "full"
    )
    return float(distances[index]), distances, mse_curve, masked_curve, bound_curve


def _json_curve(curve: Tensor) -> list[float | None]:
    """A curve for ``search.json``: None (JSON null) where a distance was not rendered (NaN)."""
    return [None if math.isnan(v) else v for v in curve.tolist()]


def probe_curve(
    guidance: Guidance,
    gaussians: Gaussians,
    distances: Tensor,
    config: SearchConfig = SearchConfig(),
    fovy_deg: float = FOVY_DEG,
    frame_index: int = 0,
    vaod: float | None = None,
) -> Tensor:
    """Eq. 5 (eq. 11 for fixed-distance models): the SDS probe at each candidate distance.

    The renders at every distance and probe azimuth share one noise drawn once from
    ``config.seed``, so that the curve varies with the distance alone. The condition is video frame
    ``frame_index`` (I₁), seen at VAOD; each view's pose is its azimuth relative to the front view
    and, with ``config.probe_radius = "relative"``, the radius change d′ − VAOD (eq. 5 lists d′ among
    ε_φ's arguments; threestudio passes ``camera_distances − cond_camera_distance``), else 0.
    """
    if config.probe_radius not in PROBE_RADII:
        raise ValueError(f"unknown search.probe_radius {config.probe_radius!r}; choose one of {', '.join(PROBE_RADII)}")
    if config.probe_radius == "relative" and vaod is None:
        raise ValueError("search.probe_radius 'relative' needs the VAOD the condition frame is seen at")
    azimuths = guidance.probe_azimuths
    noise = guidance.probe_noise(torch.Generator().manual_seed(config.seed))
    size = config.probe_size or int(getattr(guidance, "input_size", 256))
    values = torch.zeros(len(distances), dtype=torch.float64)
    for azimuth in azimuths:
        renders = orbit_renders(gaussians, distances, size, size, fovy_deg, config.batch, azimuth=azimuth)
        for start in range(0, len(distances), config.batch):
            chunk = renders[start : start + config.batch]
            batch = len(chunk)
            radius = torch.zeros(batch)
            if config.probe_radius == "relative":
                radius = (distances[start : start + batch] - float(vaod)).float()
            delta = ViewDelta(torch.zeros(batch), torch.full((batch,), float(azimuth)), radius)
            index = torch.full((batch,), frame_index, dtype=torch.long)
            with torch.no_grad():
                value = guidance.probe(chunk, index, delta, tuple(config.timesteps), noise)
            values[start : start + batch] += value.double().cpu()
    return values / len(azimuths)


def fits_in_view(
    gaussians: Gaussians,
    distances: Tensor,
    azimuths: tuple[float, ...],
    fovy_deg: float,
    fraction: float = FIT_FRACTION,
) -> Tensor:
    """(D,) bool: at each distance, the 3D input lies inside every probe view (elevation 0, square).

    Inside means at least ``fraction`` of the Gaussian centres are in front of the camera and within
    the field of view. Near the object the camera is among its Gaussians and the render saturates;
    a minimum of the probe there is the renderer's, not the prior's (Fig. 11a).
    """
    means = gaussians.means.detach().to("cpu", torch.float64)
    half = math.tan(math.radians(fovy_deg) / 2.0)
    fits = torch.ones(len(distances), dtype=torch.bool)
    for azimuth in azimuths or (0.0,):
        cams = orbit_cameras(0.0, azimuth, distances, width=1, fovy_deg=fovy_deg, dtype=torch.float64)
        view = cams.viewmats  # (D, 4, 4) OpenCV: z forward
        points = torch.einsum("dij,nj->dni", view[:, :3, :3], means) + view[:, None, :3, 3]
        depth = points[..., 2]
        inside = (depth > 1e-6) & (points[..., 0].abs() <= half * depth) & (points[..., 1].abs() <= half * depth)
        fits &= inside.double().mean(dim=1) >= fraction
    return fits


def _prominence(curve: list[float], i: int, low: int, high: int) -> float:
    """Topographic prominence of the local minimum ``i`` within ``curve[low..high]``: how far one must
    climb, on the easier side, before reaching lower ground (or the window's edge)."""
    rises = []
    for step, edge in ((-1, low), (1, high)):
        peak, j = curve[i], i
        while j != edge:
            j += step
            if curve[j] < curve[i]:
                break
            peak = max(peak, curve[j])
        rises.append(peak - curve[i])
    return min(rises)


def select_maod(
    distances: Tensor, curve: Tensor, vaod: float, fits: Tensor | None = None, rule: str = "prominent"
) -> tuple[float, str, bool]:
    """MAOD from the probe curve (Section III-B, V-A): a local minimum strictly left of VAOD.

    A local minimum is a candidate lower than its left neighbour and no higher than its right one
    (a flat bottom counts once, at its left end), both neighbours inside the window: the distances
    left of VAOD (VAOD included, as the right edge) at which the object fits the view (``fits``;
    None: all). ``rule`` ``"prominent"`` takes the minimum of largest prominence within the window
    (the deepest valley, not a ripple on a slope; ties: the lower), ``"lowest"`` the lowest one. With
    none, MAOD falls back to VAOD (:data:`FALLBACK_RULE`). The global minimum right of VAOD, where
    renders turn to background, is never chosen. Returns (MAOD, the rule in words, fell back).
    """
    if rule not in MAOD_RULES:
        raise ValueError(f"unknown search.maod_rule {rule!r}; choose one of {', '.join(MAOD_RULES)}")
    values = [float(v) for v in curve]
    right = max((i for i in range(len(distances)) if float(distances[i]) <= vaod + 1e-9), default=-1)
    left = right
    while left - 1 >= 0 and (fits is None or bool(fits[left - 1])):
        left -= 1
    minima = [i for i in range(left + 1, right) if values[i] < values[i - 1] and values[i] <= values[i + 1]]
    if not minima:
        return vaod, FALLBACK_RULE, True
    fit_note = " among the distances at which the object fits the view" if fits is not None else ""
    if rule == "lowest":
        best = min(minima, key=lambda i: values[i])
        return float(distances[best]), f"lowest local minimum of the probe strictly left of VAOD{fit_note}", False
    best = max(minima, key=lambda i: (_prominence(values, i, left, right), -values[i]))
    return float(distances[best]), f"most prominent local minimum of the probe strictly left of VAOD{fit_note}", False


@dataclass
class MAODResult:
    """Eq. 5's answer and what it was read from."""

    maod: float
    curve: Tensor  # (D,) the probe at every candidate distance
    rule: str  # how MAOD was chosen, in words
    fell_back: bool  # no minimum: MAOD = VAOD (Fig. 11c)
    fits: Tensor | None  # (D,) the object fits every probe view (None: not checked)


def search_maod(
    guidance: Guidance,
    gaussians: Gaussians,
    frame: Tensor,
    vaod: float,
    distances: Tensor,
    config: SearchConfig = SearchConfig(),
    fovy_deg: float = FOVY_DEG,
) -> MAODResult:
    """Eq. 5 (eq. 11 for fixed-distance models): the multiview-prior-aligned object distance.

    The SDS probe of the 3D input's renders at every candidate distance (:func:`probe_curve`),
    conditioned on the first frame ``frame`` (I₁, seen at ``vaod``), then the minimum left of VAOD
    among the distances where the object fits the view (:func:`fits_in_view`, :func:`select_maod`).
    """
    guidance.set_frames(frame[None])
    curve = probe_curve(guidance, gaussians, distances, config, fovy_deg, vaod=vaod)
    fits = fits_in_view(gaussians, distances, guidance.probe_azimuths, fovy_deg) if config.maod_fit else None
    maod, rule, fell_back = select_maod(distances, curve, vaod, fits, config.maod_rule)
    if config.probe_radius == "relative" and not getattr(guidance, "uses_radius", True):
        rule += " (the model takes no radius, as Stable Zero123: search.probe_radius 'relative' has no effect)"
    return MAODResult(maod, curve, rule, fell_back, fits)


def search(
    gaussians: Gaussians,
    frame: Tensor,
    mask: Tensor | None,
    guidance: Guidance | None,
    config: SearchConfig = SearchConfig(),
    fovy_deg: float = FOVY_DEG,
) -> SearchResult:
    """ODA: VAOD (eq. 4), then MAOD (eq. 5) when the guidance backend has a probe (else MAOD = VAOD,
    DESIGN.md §5), each timed."""
    started = time.perf_counter()
    vaod, distances, mse, masked, bound = _sweep_vaod(gaussians, frame, mask, config, fovy_deg)
    seconds = {"vaod": time.perf_counter() - started}
    mse_list = _json_curve(mse)
    masked_list = None if masked is None else _json_curve(masked)
    bound_list = _json_curve(bound) if bool(torch.isfinite(bound).any()) else None
    if guidance is None or not guidance.probe_azimuths:
        name = guidance.name if guidance is not None else "none"
        return SearchResult(
            vaod,
            vaod,
            distances.tolist(),
            mse_list,
            masked_list,
            None,
            f"guidance {name!r} has no probe: MAOD = VAOD",
            seconds,
            vaod_bound=bound_list,
        )
    started = time.perf_counter()
    found = search_maod(guidance, gaussians, frame, vaod, distances, config, fovy_deg)
    seconds["maod"] = time.perf_counter() - started
    return SearchResult(
        vaod,
        found.maod,
        distances.tolist(),
        mse_list,
        masked_list,
        found.curve.tolist(),
        found.rule,
        seconds,
        found.fell_back,
        None if found.fits is None else found.fits.tolist(),
        bound_list,
    )
