"""The run's tables: one row per (item, method) and a summary per method (pandas).

Rows come from the per-item flows as small dicts; a failed item is a row too, with its status and
error, so a table never hides what did not run. Missing metrics are empty cells, named in the
summary with the reason, never numbers.
"""

from __future__ import annotations

import io

import pandas as pd

from . import storage

COLUMNS = ["item", "method", "status", "error", "guidance", "psnr", "ssim", "vaod", "maod", "gaussians",
           "seconds_search", "seconds_optimize", "seconds_render", "seconds_evaluate", "seconds_total",
           "peak_memory_gib"]  # fmt: skip


def results_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    for column in COLUMNS:
        if column not in frame:
            frame[column] = None
    frame = frame[COLUMNS + [c for c in frame.columns if c not in COLUMNS]]
    return frame.sort_values(["item", "method"], kind="stable").reset_index(drop=True)


def summary_frame(results: pd.DataFrame) -> pd.DataFrame:
    """Mean of each metric over the completed items, per method, with the item counts."""
    completed = results[results["status"] == "completed"]
    grouped = completed.groupby("method", sort=True)
    summary = grouped[["psnr", "ssim", "seconds_total"]].mean(numeric_only=False)
    summary.insert(0, "items", grouped.size())
    failed = results[results["status"] != "completed"].groupby("method").size()
    summary["failed"] = failed.reindex(summary.index).fillna(0).astype(int)
    return summary.reset_index()


def write_tables(run_root: str, rows: list[dict], missing: dict[str, str] | None = None) -> dict[str, str]:
    """``tables/results.csv`` and ``tables/summary.md`` (Markdown); returns their URIs."""
    results = results_frame(rows)
    summary = summary_frame(results)
    csv_uri = storage.join(run_root, "tables", "results.csv")
    buffer = io.StringIO()
    results.to_csv(buffer, index=False)
    storage.write_text(csv_uri, buffer.getvalue())
    md_uri = storage.join(run_root, "tables", "summary.md")
    storage.write_text(md_uri, summary_markdown(results, summary, missing or {}))
    return {"results": csv_uri, "summary": md_uri}


def summary_markdown(results: pd.DataFrame, summary: pd.DataFrame, missing: dict[str, str]) -> str:
    backends = ", ".join(sorted({str(b) for b in results["guidance"].dropna()})) or "none"
    failed = results[results["status"] != "completed"]
    lines = [
        "# align4d run",
        "",
        f"{len(results)} (item, method) runs: {len(results) - len(failed)} completed, {len(failed)} failed. "
        f"Guidance backend: {backends}.",
        "",
        "## Mean over completed items",
        "",
        summary.to_markdown(index=False, floatfmt=".4g"),
        "",
        "## Per item",
        "",
        results[["item", "method", "status", "psnr", "ssim", "vaod", "maod", "seconds_total"]].to_markdown(
            index=False, floatfmt=".4g"
        ),
    ]
    if len(failed):
        lines += ["", "## Failures", ""] + [f"- {r.item} / {r.method}: {r.error}" for r in failed.itertuples()]
    if missing:
        lines += ["", "## Metrics not reported", ""] + [f"- {name}: {reason}" for name, reason in missing.items()]
    return "\n".join(lines) + "\n"
