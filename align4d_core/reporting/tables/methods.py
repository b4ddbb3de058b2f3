"""The paper's Table II (mean per method) and Table III (the full method against its ablations).

A mean is over the completed items of a method (the Consistent4D protocol averages per frame, then
per view inside each item, then over items). A failed item is left out of the mean and counted; a
metric that some items lack is averaged over the items that have it, and the notes say so, because
a mean over fewer items is not comparable with one over all of them.
"""

from __future__ import annotations

import pandas as pd

from align4d_core.config import METRICS
from align4d_core.reporting.tables.context import completed, context_notes, method_order
from align4d_core.reporting.tables.results import metric_columns
from align4d_core.reporting.tables.table import Column, Table

ABLATIONS = {"align4d": "Align4D (full)", "no-oda": "w/o ODA", "no-mgja": "w/o MGJA", "no-ao": "w/o AO"}
"""The presets of Table III and their labels there."""


def method_means(results: pd.DataFrame) -> pd.DataFrame:
    """Per method: completed and failed counts and the mean of each metric over completed items."""
    records = []
    for method in method_order(results["method"]):
        rows = results[results["method"] == method]
        done = completed(rows)
        record = {"method": method, "items": len(done), "failed": len(rows) - len(done)}
        for name in METRICS:
            values = pd.to_numeric(done[name], errors="coerce").dropna()
            record[name] = float(values.mean()) if len(values) else None
            record[f"{name}_items"] = len(values)
        records.append(record)
    return pd.DataFrame(records, columns=["method", "items", "failed", *METRICS, *(f"{m}_items" for m in METRICS)])


def _partial_notes(means: pd.DataFrame) -> list[str]:
    notes = []
    for _, row in means.iterrows():
        for name in METRICS:
            if 0 < row[f"{name}_items"] < row["items"]:
                notes.append(
                    f"{row['method']}: {name} is the mean over {row[f'{name}_items']} of its "
                    f"{row['items']} completed items (the others lack it)."
                )
    return notes


def _item_set_note(results: pd.DataFrame, methods: list[str]) -> list[str]:
    done = completed(results)
    sets = {m: frozenset(done.loc[done["method"] == m, "item"]) for m in methods}
    if len(set(sets.values())) <= 1:
        return []
    return [
        "The methods completed different sets of items, so their means are over different items: "
        + "; ".join(f"{m}: {', '.join(sorted(s)) or 'none'}" for m, s in sets.items())
        + "."
    ]


def _failed_note(means: pd.DataFrame) -> list[str]:
    failed = int(means["failed"].sum()) if len(means) else 0
    return (
        [f"{failed} failed (item, method) run(s) are left out of the means (see the results table)."] if failed else []
    )


def methods_table(results: pd.DataFrame) -> Table:
    """Table II: mean per method over completed items (PSNR↑ SSIM↑ LPIPS↓ CLIP↑ CLIP-F↑ FVD↓)."""
    means = method_means(results)
    columns = [
        Column("method", "method"),
        Column("items", "items", "d"),
        Column("failed", "failed", "d"),
        *metric_columns(),
    ]
    notes = (
        context_notes(results)
        + _partial_notes(means)
        + _failed_note(means)
        + _item_set_note(results, list(means["method"]))
    )
    return Table(
        "methods",
        "Mean per method over completed items (cf. the paper's Table II)",
        means,
        columns,
        notes,
        csv_frame=means[[c.key for c in columns]],
    )


def ablation_table(results: pd.DataFrame) -> Table:
    """Table III: the full method and whichever of its ablations this run has."""
    means = method_means(results)
    means = means[means["method"].isin(ABLATIONS)].copy()
    means.insert(1, "variant", means["method"].map(ABLATIONS))
    columns = [
        Column("method", "method"),
        Column("variant", "variant"),
        Column("items", "items", "d"),
        *metric_columns(),
    ]
    present = list(means["method"])
    absent = [m for m in ABLATIONS if m not in present]
    notes = context_notes(results) + _partial_notes(means) + _failed_note(means) + _item_set_note(results, present)
    if "align4d" not in present:
        notes.append("The full method (align4d) was not run, so there is nothing to compare the ablations with.")
    if not any(m in present for m in ("no-oda", "no-mgja", "no-ao")):
        notes.append(
            "The ablations were not run: this run's methods are "
            f"{', '.join(method_order(results['method'])) or 'none'}; run with "
            "--methods align4d,no-oda,no-mgja,no-ao for the full table."
        )
    elif absent:
        notes.append(f"Not run: {', '.join(absent)}.")
    return Table(
        "ablation",
        "Ablations: the full method without ODA, MGJA or AO (cf. the paper's Table III)",
        means,
        columns,
        notes,
        csv_frame=means[[c.key for c in columns]],
    )
