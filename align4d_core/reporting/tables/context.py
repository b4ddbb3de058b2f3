"""What every table of a run states besides its numbers: the guidance backend and the missing metrics.

A table computed with the weight-free ``anchor`` guidance is not the paper's method with Zero123, and
a metric that could not be computed is not zero: both are said in each table's notes, so that a
table copied out of the report on its own still carries them (DESIGN.md §5, §7).
"""

from __future__ import annotations

from collections import Counter

import pandas as pd

from align4d_core.config import METRICS
from align4d_core.reporting.rows import parse_missing

METRIC_LABELS = {"psnr": "PSNR", "ssim": "SSIM", "lpips": "LPIPS", "clip": "CLIP", "clip_f": "CLIP-F", "fvd": "FVD"}
METRIC_BETTER = {"psnr": "↑", "ssim": "↑", "lpips": "↓", "clip": "↑", "clip_f": "↑", "fvd": "↓"}
METRIC_FORMATS = {"psnr": ".2f", "ssim": ".3f", "lpips": ".3f", "clip": ".3f", "clip_f": ".3f", "fvd": ".1f"}

METHOD_ORDER = ("align4d", "no-oda", "no-mgja", "no-ao")
"""The full method first, then the ablations in the order of the paper's Table III."""


def completed(results: pd.DataFrame) -> pd.DataFrame:
    return results[results["status"] == "completed"]


def method_order(methods) -> list[str]:
    """The run's methods, the presets in their paper order first, any others after them by name."""
    present = set(methods)
    return [m for m in METHOD_ORDER if m in present] + sorted(present - set(METHOD_ORDER))


def backend_note(results: pd.DataFrame) -> str:
    """``Guidance backend: anchor.``, or the backend of each method when they differ."""
    done = completed(results)
    done = done[done["guidance"].notna()]
    if done.empty:
        return "Guidance backend: none recorded (no (item, method) run completed)."
    backends = sorted(set(done["guidance"].astype(str)))
    if len(backends) == 1:
        return f"Guidance backend: {backends[0]}."
    per_method = []
    for method in method_order(done["method"]):
        used = sorted(set(done.loc[done["method"] == method, "guidance"].astype(str)))
        per_method.append(f"{method}: {'/'.join(used)}")
    return f"Guidance backends: {', '.join(per_method)}."


def missing_reasons(results: pd.DataFrame, metrics=METRICS) -> dict[str, Counter]:
    """Per metric, the reasons it is missing and how many completed runs gave each reason."""
    out: dict[str, Counter] = {}
    for _, row in completed(results).iterrows():
        reasons = parse_missing(row.get("missing"))
        for name in metrics:
            value = row.get(name)
            if value is None or pd.isna(value):
                out.setdefault(name, Counter())[reasons.get(name) or reasons.get("all") or "not reported"] += 1
    return {name: out[name] for name in metrics if name in out}


def missing_notes(results: pd.DataFrame, metrics=METRICS) -> list[str]:
    """One note per reason some completed runs lack metrics: which metrics, for how many runs, why.

    Metrics missing for the same runs and the same reason (CLIP and CLIP-F without CLIP weights)
    share one note.
    """
    total = len(completed(results))
    grouped: dict[tuple, list[str]] = {}
    for name, reasons in missing_reasons(results, metrics).items():
        grouped.setdefault(tuple(sorted(reasons.items())), []).append(METRIC_LABELS.get(name, name))
    notes = []
    for reasons, names in grouped.items():
        count = sum(n for _, n in reasons)
        why = "; ".join(reason for reason, _ in reasons)
        share = "all" if count == total else f"{count} of"
        notes.append(f"{', '.join(names)} missing for {share} {total} completed run(s): {why}.")
    return notes


PROTOCOL_TEXT = {
    "consistent4d": "Consistent4D's evaluation scripts' arithmetic (8-bit PIL resize, PSNR/SSIM on 0–255 "
    "with the data range of each frame; comparable with the paper's Table II when at 512 px)",
    "clean": "float bicubic resize, PSNR/SSIM with data range 1 (not comparable with Table II)",
}


def protocol_note(results: pd.DataFrame) -> list[str]:
    """How the metrics were computed, and what FVD is (docs/method.md, "Metrics" and "FVD")."""
    done = completed(results)
    if "protocol" not in done or done["protocol"].dropna().empty:
        return []
    used = sorted(set(done["protocol"].dropna().astype(str)))
    parts = []
    for label in used:
        name, _, size = label.partition("@")
        at = "at the views' own size (the CPU profile: not Table II's 512 px)" if size == "native" else f"at {size} px"
        parts.append(f"{name} {at}: {PROTOCOL_TEXT.get(name, 'unknown protocol')}")
    notes = [f"Metrics protocol: {'; '.join(parts)}."]
    if done["fvd"].notna().any() if "fvd" in done else False:
        notes.append(
            "FVD: per view, the Fréchet distance of one I3D logit vector per side (|Δμ|², covariances zero; "
            "Consistent4D's compute_fvd.py gives NaN there), averaged over views, then items. FVD (pooled): "
            "one Gaussian per side fitted over every view of every item of the method. Both depend on the "
            "frames per video (column frames)."
        )
    return notes


def context_notes(results: pd.DataFrame, metrics=METRICS) -> list[str]:
    """The backend note, the protocol, then the missing-metric notes (or that none is missing)."""
    notes = [backend_note(results)] + protocol_note(results)
    missing = missing_notes(results, metrics)
    if missing:
        notes += missing
    elif len(completed(results)):
        notes.append("Missing metrics: none; every metric was computed for every completed run.")
    return notes
