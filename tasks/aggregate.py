"""Task ``aggregate``: the run's tables, figures and report page, and their Prefect artifacts.

The work is :func:`align4d_core.reporting.publish.publish_run` (also behind ``align4d tables RUN_URI``); the
task adds what only Prefect shows: the results as a table artifact, each table (with its notes on
the guidance backend and the missing metrics) as a Markdown artifact, and a link to the report.
"""

from __future__ import annotations

from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from align4d_core.reporting.publish import publish_run

from .common import stage_task


@stage_task("aggregate")
def aggregate(run_root: str, rows: list[dict]) -> dict:
    published = publish_run(run_root, rows)
    table = published.results.astype(object).where(lambda f: f.notna(), None)
    create_table_artifact(table.to_dict(orient="records"), key="align4d-results", description=f"results of {run_root}")
    for item in published.tables:
        create_markdown_artifact(
            item.to_markdown(), key=f"align4d-table-{item.name}", description=f"{item.title}: {run_root}"
        )
    create_markdown_artifact(published.summary_markdown, key="align4d-summary", description=f"summary of {run_root}")
    create_link_artifact(
        published.uris["report"],
        link_text="align4d report",
        key="align4d-report",
        description=f"the report page of {run_root}",
    )
    return {
        "results": published.uris["results.csv"],
        "summary": published.uris["summary.md"],
        "report": published.uris["report"],
        "rows": len(published.results),
        "failed": published.failed,
    }
