"""Everything a finished run publishes, from its folder: tables, run-level figures, the report page.

The aggregation task of the ``align4d`` flow and ``align4d tables RUN_URI`` both call
:func:`publish_run`, so a table rebuilt from the run folder's row files is the table the flow
wrote. The flow passes its rows (including those of manifest lines that never got an item folder);
the command reads them back (:func:`align4d_core.reporting.tables.read_rows`).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from align4d_core.io import storage
from align4d_core.reporting.report import write_report
from align4d_core.reporting.run_plots import write_run_plots
from align4d_core.reporting.tables import (
    Table,
    build_tables,
    keep_rows,
    read_histories,
    read_i3d,
    read_rows,
    read_run_json,
    read_searches,
    results_frame,
    write_tables,
)


@dataclass
class Published:
    """What :func:`publish_run` wrote: the tables (for Prefect artifacts), the results, every URI."""

    tables: list[Table]
    results: pd.DataFrame
    uris: dict[str, str]  # "results.csv", ..., "summary.md", "rows.json", "plot:<name>", "report"

    @property
    def failed(self) -> int:
        return int((self.results["status"] != "completed").sum()) if len(self.results) else 0

    @property
    def summary_markdown(self) -> str:
        """``tables/summary.md``: every table on one Markdown page."""
        return storage.read_text(self.uris["summary.md"])

    def table(self, name: str) -> Table:
        return next(t for t in self.tables if t.name == name)


def publish_run(run_root: str, rows: list[dict] | None = None) -> Published:
    """Write ``tables/``, ``plots/`` and ``report.html`` of the run at ``run_root``.

    ``rows`` are the run's (item, method) rows; without them they are read from the run folder.
    """
    if rows is None:
        rows = read_rows(run_root)
    run = read_run_json(run_root)
    histories = read_histories(run_root, rows)
    tables = build_tables(rows, histories, read_i3d(run_root, rows))
    results = results_frame(rows)
    uris = write_tables(run_root, tables, results, str(run.get("run_id", "")))
    uris["rows.json"] = keep_rows(run_root, rows)
    plots = write_run_plots(run_root, read_searches(run_root, rows), histories)
    uris.update({f"plot:{name}": uri for name, uri in plots.items()})
    uris["report"] = write_report(run_root, tables, results, plots, run)
    return Published(tables, results, uris)
