"""The results table: one row per (item, method), finished or not, with all metrics and the distances.

Its CSV (``tables/results.csv``, DESIGN.md §9) holds every column of every row, costs included, for
programs; its Markdown, LaTeX and HTML show the metrics, VAOD, MAOD, the status and the error.
"""

from __future__ import annotations

import pandas as pd

from align4d_core.config import METRICS
from align4d_core.io.markers import STAGES
from align4d_core.method.oda import SEARCH_PARTS
from align4d_core.reporting.tables.context import (
    METRIC_BETTER,
    METRIC_FORMATS,
    METRIC_LABELS,
    context_notes,
    method_order,
)
from align4d_core.reporting.tables.table import Column, Table

COLUMNS = (
    [
        "item",
        "method",
        "status",
        "error",
        "guidance",
        *METRICS,
        "missing",
        "protocol",
        "eval_frames",
        "vaod",
        "maod",
        "maod_source",
        "maod_rule",
        "maod_fallback",
        "gaussians",
        "final_loss",
    ]
    + [f"seconds_search_{p}" for p in SEARCH_PARTS]
    + [f"seconds_{s}" for s in STAGES]
    + ["seconds_total"]
    + [f"peak_memory_gib_{s}" for s in STAGES]
    + ["peak_memory_gib"]
)
"""The CSV's columns, in order; columns a row has beyond these follow them."""

TEXT = (
    "item",
    "method",
    "status",
    "error",
    "guidance",
    "missing",
    "protocol",
    "maod_source",
    "maod_rule",
    "maod_fallback",
)
NUMERIC = [c for c in COLUMNS if c not in TEXT]


def metric_columns() -> list[Column]:
    return [Column(m, METRIC_LABELS[m], METRIC_FORMATS[m], METRIC_BETTER[m]) for m in METRICS]


def results_frame(rows: list[dict]) -> pd.DataFrame:
    """Every row with every column (missing ones empty), sorted by item, then method in paper order."""
    frame = pd.DataFrame(rows)
    for column in COLUMNS:
        if column not in frame:
            frame[column] = None
    for column in NUMERIC:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    frame = frame[COLUMNS + [c for c in frame.columns if c not in COLUMNS]]
    if frame.empty:
        return frame
    rank = {m: k for k, m in enumerate(method_order(frame["method"]))}
    order = frame.assign(_rank=frame["method"].map(rank)).sort_values(["item", "_rank"], kind="stable")
    return order.drop(columns="_rank").reset_index(drop=True)


def results_table(results: pd.DataFrame) -> Table:
    columns = [
        Column("item", "item"),
        Column("method", "method"),
        Column("status", "status"),
        *metric_columns(),
        Column("vaod", "VAOD", ".3f"),
        Column("maod", "MAOD", ".3f"),
        Column("maod_source", "MAOD from"),
        Column("error", "error"),
    ]
    notes: list[str] = []
    fell_back = (
        results[results["maod_fallback"].fillna(False).astype(bool)] if "maod_fallback" in results else results[:0]
    )
    if len(fell_back):
        runs = ", ".join(f"{r.item}/{r.method}" for r in fell_back.itertuples())
        notes.append(
            f"MAOD fell back to VAOD (no local minimum of the probe left of VAOD; the paper's failure case "
            f"of Fig. 11c) for {len(fell_back)} run(s): {runs}."
        )
    failed = results[results["status"] != "completed"]
    if len(failed):
        notes.append(
            f"{len(failed)} of {len(results)} (item, method) runs did not complete; the error column says why."
        )
    return Table(
        "results",
        "Results per item and method",
        results,
        columns,
        notes,
        csv_frame=results,
        shared_notes=context_notes(results),
    )
