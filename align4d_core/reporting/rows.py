"""One line of a run's results: what one (item, method) produced, what it cost, or why it failed.

The per-item flow writes a row as ``row.json`` into the item's folder, finished or failed, and the
tables are built from these files alone (``align4d tables RUN_URI``), so a row carries everything a
table shows: the six metrics of DESIGN.md §7 (None when not computed, with the reason in
``missing``), the distances, the guidance backend, and the seconds and peak memory of each stage,
with the search split into its VAOD and MAOD parts (Table V).
"""

from __future__ import annotations

import math
import re
import traceback

from align4d_core.config import METRICS
from align4d_core.io import storage
from align4d_core.io.markers import STAGES
from align4d_core.method.oda import SEARCH_PARTS

GIB = 2**30


def missing_text(missing: dict[str, str] | None) -> str | None:
    """``"lpips: reason; fvd: reason"`` (the CSV's ``missing`` column), or None when nothing is missing."""
    if not missing:
        return None
    return "; ".join(f"{name}: {reason}" for name, reason in missing.items())


_MISSING_SPLIT = re.compile(r";\s*(?=(?:all|" + "|".join(METRICS) + r"):\s)")


def parse_missing(text: str | None) -> dict[str, str]:
    """The inverse of :func:`missing_text`; splits only before a metric name, so a reason may hold ';'."""
    if not isinstance(text, str) or not text.strip():
        return {}
    out = {}
    for part in _MISSING_SPLIT.split(text.strip()):
        name, _, reason = part.partition(":")
        out[name.strip()] = reason.strip()
    return out


def metric_columns(metrics: dict) -> dict:
    """The six metric values and the ``missing`` column from an evaluate stage's result.

    A metric without a value always has a reason: the stage's own, the stage's reason for every
    metric (key ``all``, e.g. an item without ground truth), or "not reported".
    """
    reasons = dict(metrics.get("missing") or {})
    every = reasons.pop("all", None)
    values, missing = {}, {}
    for name in METRICS:
        value = metrics.get(name)
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        values[name] = float(value) if number and math.isfinite(value) else None
        if values[name] is None:
            why = f"the evaluate stage gave {value!r}, not a finite number" if number else None
            missing[name] = reasons.get(name) or why or every or "not reported by the evaluate stage"
    return {**values, "missing": missing_text(missing), **protocol_columns(metrics)}


def protocol_columns(metrics: dict) -> dict:
    """How the metrics were computed: ``consistent4d@512`` (protocol @ scoring size, ``native`` for
    the files' own size) and the frames per eval video, which FVD depends on."""
    protocol = metrics.get("protocol")
    if protocol is None:
        return {"protocol": None, "eval_frames": None}
    frames = metrics.get("frames")
    return {
        "protocol": f"{protocol}@{metrics.get('size') or 'native'}",
        "eval_frames": frames if isinstance(frames, int) else None,
    }


def completed_row(
    item_id: str, method: str, out: str, found: dict, optimized: dict, metrics: dict, pair_seconds: float | None = None
) -> dict:
    """The row of a finished (item, method): metrics, distances, backend, cost per stage.

    ``pair_seconds`` is the time the pair generation took (None when the item gave its pair); the
    pair is shared by the item's methods, so it stays out of ``seconds_total``.
    """
    from align4d_core.io.markers import stage_records

    records = stage_records(out)
    search_json = storage.read_json(storage.join(out, "search.json"))
    row = {
        "item": item_id,
        "method": method,
        "status": "completed",
        "error": None,
        "guidance": search_json.get("guidance"),
        **metric_columns(metrics),
        "vaod": found["vaod"],
        "maod": found["maod"],
        "maod_rule": found.get("maod_rule", search_json.get("maod_rule")),
        "maod_fallback": bool(found.get("maod_fallback", search_json.get("maod_fallback", False))),
        "maod_source": maod_source(
            found.get("maod_rule", search_json.get("maod_rule")),
            found.get("maod_fallback", search_json.get("maod_fallback", False)),
        ),
        "gaussians": optimized.get("gaussians"),
        "final_loss": optimized.get("final_loss"),
    }
    row.update(cost_columns(records, found.get("seconds") or search_json.get("seconds") or {}))
    row["seconds_pairs"] = float(pair_seconds) if pair_seconds is not None else None
    return row


def maod_source(rule: str | None, fell_back: bool) -> str:
    """Where a row's MAOD came from, in a few words for the results table.

    A fallback (no local minimum of the probe left of VAOD) is the paper's failure case of Fig. 11c,
    so it is named in the row itself, not only in ``search.json``.
    """
    rule = rule or ""
    if rule.startswith("oda off"):
        return "fixed (oda off)"
    if "has no probe" in rule:
        return "= VAOD (no probe)"
    if fell_back:
        return "= VAOD (fallback: no minimum, Fig. 11c)"
    return "probe"


def cost_columns(records: dict[str, dict], search_seconds: dict[str, float]) -> dict:
    """``seconds_<stage>``, ``seconds_search_<part>``, ``peak_memory_gib_<stage>`` and the totals.

    Each stage's seconds and peak memory are those its ``done.json`` recorded (DESIGN.md §2); the
    peak is the process's peak up to the end of that stage (CUDA's peak allocation, else the peak
    RSS), so the overall peak is their maximum.
    """
    row: dict = {}
    for part in SEARCH_PARTS:
        value = search_seconds.get(part)
        row[f"seconds_search_{part}"] = float(value) if value is not None else None
    peaks = []
    for name in STAGES:
        record = records.get(name) or {}
        seconds = (record.get("timings") or {}).get(name)
        peak = record.get("peak_memory_bytes")
        row[f"seconds_{name}"] = seconds
        row[f"peak_memory_gib_{name}"] = peak / GIB if peak is not None else None
        if peak is not None:
            peaks.append(peak)
    timed = [row[f"seconds_{name}"] for name in STAGES if row[f"seconds_{name}"] is not None]
    row["seconds_total"] = sum(timed) if timed else None
    row["peak_memory_gib"] = max(peaks) / GIB if peaks else None
    return row


def failed_row(item_id: str, method: str, error: BaseException) -> dict:
    """The row of an (item, method) that did not finish: the error and where it was raised."""
    message = str(error) or type(error).__name__
    last = traceback.extract_tb(error.__traceback__)[-1:] if error.__traceback__ else []
    where = f" ({last[0].filename.rsplit('/', 1)[-1]}:{last[0].lineno})" if last else ""
    return {"item": item_id, "method": method, "status": "failed", "error": f"{type(error).__name__}: {message}{where}"}
