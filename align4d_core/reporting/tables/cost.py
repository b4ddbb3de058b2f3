"""The paper's Table V: what each stage costs, in seconds and peak memory, per method.

The paper measures the time of generating the 4D target (search + optimisation) and reports the two
searches, VAOD and MAOD, on their own rows; so does this table, from the stage markers' timings and
the search's own split. Means are over the completed items of a method. A stage's peak memory is the
process's peak up to the end of that stage, as its ``done.json`` recorded it (CUDA's peak
allocation when CUDA ran, else the peak resident set size), so it is measured per stage, not per
part of the search.
"""

from __future__ import annotations

import pandas as pd

from align4d_core.reporting.tables.context import completed, context_notes, method_order
from align4d_core.reporting.tables.table import Column, Table

STAGE_ROWS = (
    ("pairs (generated, shared by the methods)", "seconds_pairs", None),
    ("search: VAOD", "seconds_search_vaod", None),
    ("search: MAOD", "seconds_search_maod", None),
    ("search (VAOD + MAOD)", "seconds_search", "peak_memory_gib_search"),
    ("optimize", "seconds_optimize", "peak_memory_gib_optimize"),
    ("generation (search + optimize)", None, None),
    ("render", "seconds_render", "peak_memory_gib_render"),
    ("evaluate", "seconds_evaluate", "peak_memory_gib_evaluate"),
    ("all stages", "seconds_total", "peak_memory_gib"),
)
"""(label, seconds column, peak-memory column) of each row; the generation row is the paper's
"time spent on generating 4D targets": search plus optimisation, per item. The pairs row appears
only when some item's pair was generated (items that give their pair have no such time)."""


def _mean(values: pd.Series) -> tuple[float | None, int]:
    values = pd.to_numeric(values, errors="coerce").dropna()
    return (float(values.mean()) if len(values) else None), len(values)


def _generation(rows: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Per item: search + optimize seconds (blank unless both ran) and the larger of their peaks."""
    seconds = (
        rows[["seconds_search", "seconds_optimize"]].apply(pd.to_numeric, errors="coerce").sum(axis=1, min_count=2)
    )
    peaks = rows[["peak_memory_gib_search", "peak_memory_gib_optimize"]].apply(pd.to_numeric, errors="coerce")
    return seconds, peaks.max(axis=1)


def cost_frame(results: pd.DataFrame) -> pd.DataFrame:
    records = []
    done = completed(results)
    for method in method_order(done["method"]):
        rows = done[done["method"] == method]
        for label, seconds, memory in STAGE_ROWS:
            if seconds == "seconds_pairs" and (
                seconds not in rows or pd.to_numeric(rows[seconds], errors="coerce").isna().all()
            ):
                continue
            if seconds is None:
                times, peaks = _generation(rows)
            else:
                times, peaks = rows[seconds], rows[memory] if memory else pd.Series(dtype=float)
            mean, count = _mean(times)
            peak, _ = _mean(peaks)
            records.append(
                {
                    "method": method,
                    "stage": label,
                    "items": count,
                    "seconds": mean,
                    "minutes": None if mean is None else mean / 60,
                    "peak_memory_gib": peak,
                }
            )
    return pd.DataFrame(records, columns=["method", "stage", "items", "seconds", "minutes", "peak_memory_gib"])


def _maod_notes(results: pd.DataFrame) -> list[str]:
    """Why a method has no MAOD time: the rule its search followed (no probe, or ODA off)."""
    done = completed(results)
    notes = []
    for method in method_order(done["method"]):
        rows = done[done["method"] == method]
        untimed = rows[rows["seconds_search_maod"].isna()]
        if len(untimed):
            rules = sorted({str(r) for r in untimed["maod_rule"].dropna()}) or ["no MAOD timing recorded"]
            notes.append(
                f"{method}: no MAOD search time for {len(untimed)} of {len(rows)} item(s): {'; '.join(rules)}."
            )
        unsearched = rows[rows["seconds_search_vaod"].isna()]
        if len(unsearched):
            rules = sorted({str(r) for r in unsearched["maod_rule"].dropna()}) or ["no VAOD timing recorded"]
            notes.append(
                f"{method}: no VAOD search time for {len(unsearched)} of {len(rows)} item(s): {'; '.join(rules)}."
            )
    return notes


def cost_table(results: pd.DataFrame) -> Table:
    """Table V: seconds and peak memory per stage and method, means over completed items."""
    frame = cost_frame(results)
    columns = [
        Column("method", "method"),
        Column("stage", "stage"),
        Column("items", "items", "d"),
        Column("seconds", "time (s)", ".3g"),
        Column("minutes", "time (min)", ".3g"),
        Column("peak_memory_gib", "peak memory (GiB)", ".2f"),
    ]
    notes = _maod_notes(results)
    notes += [
        "Peak memory is measured per stage (CUDA's peak allocation when CUDA ran, else the process's peak "
        "resident set size, since the process started), so the VAOD and MAOD rows have none of their own.",
        "A stage that a re-run skipped keeps the time of the run that computed it.",
    ]
    return Table(
        "cost",
        "Time and peak memory per stage (cf. the paper's Table V)",
        frame,
        columns,
        notes,
        shared_notes=context_notes(results),
    )
