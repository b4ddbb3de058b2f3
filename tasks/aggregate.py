"""Task ``aggregate``: the run's tables (CSV, Markdown) and their Prefect artifacts."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from align4d_core import storage
from align4d_core.metrics.protocol import MISSING
from align4d_core.tables import results_frame, write_tables

from .common import RETRY_DELAYS, retry_transient


@task(name="aggregate", retries=len(RETRY_DELAYS), retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=retry_transient)
def aggregate(run_root: str, rows: list[dict]) -> dict:
    uris = write_tables(run_root, rows, MISSING)
    table = results_frame(rows).astype(object).where(lambda f: f.notna(), None)
    create_table_artifact(table.to_dict(orient="records"), key="align4d-results",
                          description=f"results of {run_root}")  # fmt: skip
    create_markdown_artifact(storage.read_text(uris["summary"]), key="align4d-summary",
                             description=f"summary of {run_root}")  # fmt: skip
    failed = sum(r.get("status") != "completed" for r in rows)
    return {**uris, "rows": len(rows), "failed": failed}
