"""The run's tables (DESIGN.md §8, §9; the paper's Tables II–V), with pandas.

* ``results``  one row per (item, method): all metrics, VAOD, MAOD, status, error (CSV: every column)
* ``methods``  mean per method over completed items (Table II)
* ``ablation`` the full method against ``no-oda``, ``no-mgja``, ``no-ao`` (Table III)
* ``losses``   AO (``align4d``) against JO (``no-ao``) at steps 100 … 500 (Table IV)
* ``cost``     seconds and peak memory per stage and method (Table V)

Each is written as ``tables/<name>.csv``, ``.md`` and ``.tex``; ``tables/summary.md`` puts them all
on one page. Every table states the guidance backend and the missing metrics with their reasons;
a missing value is an empty CSV cell and a dash elsewhere, never a number.
"""

from __future__ import annotations

import pandas as pd

from align4d_core.io import storage
from align4d_core.reporting.tables.context import backend_note, context_notes, missing_notes
from align4d_core.reporting.tables.cost import cost_table
from align4d_core.reporting.tables.inputs import (
    keep_rows,
    read_histories,
    read_i3d,
    read_rows,
    read_run_json,
    read_searches,
)
from align4d_core.reporting.tables.losses import losses_table, windowed_loss
from align4d_core.reporting.tables.methods import ablation_table, method_means, methods_table
from align4d_core.reporting.tables.results import COLUMNS, results_frame, results_table
from align4d_core.reporting.tables.table import MISSING_MARK, Column, Table, markdown_escape

__all__ = [
    "COLUMNS",
    "MISSING_MARK",
    "Column",
    "Table",
    "ablation_table",
    "backend_note",
    "build_tables",
    "context_notes",
    "cost_table",
    "keep_rows",
    "losses_table",
    "method_means",
    "methods_table",
    "missing_notes",
    "read_histories",
    "read_i3d",
    "read_rows",
    "read_run_json",
    "read_searches",
    "results_frame",
    "results_table",
    "summary_markdown",
    "windowed_loss",
    "write_tables",
]


def build_tables(
    rows: list[dict], histories: dict[tuple[str, str], list[dict]], i3d: dict[tuple[str, str], dict] | None = None
) -> list[Table]:
    """Every table of a run from its rows, the loss histories of its completed runs and the I3D
    logits of those that computed FVD (for the pooled FVD)."""
    results = results_frame(rows)
    return [
        results_table(results),
        methods_table(results, i3d),
        ablation_table(results, i3d),
        losses_table(results, histories),
        cost_table(results),
    ]


def summary_markdown(tables: list[Table], results: pd.DataFrame, run_id: str = "") -> str:
    """All tables on one Markdown page (``tables/summary.md``, the run's Prefect summary artifact)."""
    done = int((results["status"] == "completed").sum()) if len(results) else 0
    lines = [
        f"# align4d run {run_id}".rstrip(),
        "",
        f"{len(results)} (item, method) runs: {done} completed, {len(results) - done} failed or not run. "
        f"{backend_note(results)}",
        "",
    ]
    shared = tables[0].shared_notes if tables else []
    if shared:  # said once for the page; each table's own file still carries them
        lines += ["Every table below rests on:", ""] + [f"- {markdown_escape(n)}" for n in shared] + [""]
    return "\n".join(lines) + "\n".join(table.to_markdown(shared=not shared) for table in tables)


def write_tables(run_root: str, tables: list[Table], results: pd.DataFrame, run_id: str = "") -> dict[str, str]:
    """``tables/<name>.csv|md|tex`` and ``tables/summary.md``; returns URIs as ``<name>.<format>``."""
    folder = storage.join(run_root, "tables")
    uris = {}
    for table in tables:
        uris.update({f"{table.name}.{fmt}": uri for fmt, uri in table.write(folder).items()})
    uris["summary.md"] = storage.join(folder, "summary.md")
    storage.write_text(uris["summary.md"], summary_markdown(tables, results, run_id))
    return uris
