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


I3D = dict[tuple[str, str], dict]
"""The I3D logits (metrics.json's ``i3d``) of each completed (item, method) that computed FVD."""


def method_means(results: pd.DataFrame, i3d: I3D | None = None) -> pd.DataFrame:
    """Per method: completed and failed counts, the mean of each metric over completed items, the
    pooled FVD over all views of its items (when every one kept its I3D logits) and the frames."""
    i3d = i3d or {}
    records = []
    for method in method_order(results["method"]):
        rows = results[results["method"] == method]
        done = completed(rows)
        record = {"method": method, "items": len(done), "failed": len(rows) - len(done)}
        for name in METRICS:
            values = pd.to_numeric(done[name], errors="coerce").dropna()
            record[name] = float(values.mean()) if len(values) else None
            record[f"{name}_items"] = len(values)
        logits = [i3d.get((str(item), method)) for item in done["item"]]
        record["fvd_pooled"] = pooled_fvd(logits) if len(done) and all(logits) else None
        record["frames"] = frame_counts(done)
        records.append(record)
    columns = ["method", "items", "failed", *METRICS, "fvd_pooled", "frames", *(f"{m}_items" for m in METRICS)]
    return pd.DataFrame(records, columns=columns)


def pooled_fvd(logits: list[dict]) -> float | None:
    """:func:`align4d_core.metrics.pooled_fvd` of the items' I3D logits."""
    from align4d_core.metrics import pooled_fvd as pooled

    return pooled([{"i3d": x} for x in logits])


def frame_counts(rows: pd.DataFrame) -> str | None:
    """The eval frames per video of these rows: ``16``, or ``8–16`` when they differ (FVD depends on it)."""
    if "eval_frames" not in rows:
        return None
    counts = sorted({int(v) for v in pd.to_numeric(rows["eval_frames"], errors="coerce").dropna()})
    if not counts:
        return None
    return str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"


def fvd_columns() -> list[Column]:
    return [Column("fvd_pooled", "FVD (pooled)", ".1f", "↓"), Column("frames", "frames")]


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


def methods_table(results: pd.DataFrame, i3d: I3D | None = None) -> Table:
    """Table II: mean per method over completed items (PSNR↑ SSIM↑ LPIPS↓ CLIP↑ CLIP-F↑ FVD↓)."""
    means = method_means(results, i3d)
    columns = [
        Column("method", "method"),
        Column("items", "items", "d"),
        Column("failed", "failed", "d"),
        *metric_columns(),
        *fvd_columns(),
    ]
    notes = _partial_notes(means) + _failed_note(means) + _item_set_note(results, list(means["method"]))
    return Table(
        "methods",
        "Mean per method over completed items (cf. the paper's Table II)",
        means,
        columns,
        notes,
        csv_frame=means[[c.key for c in columns]],
        shared_notes=context_notes(results),
    )


def ablation_table(results: pd.DataFrame, i3d: I3D | None = None) -> Table:
    """Table III: the full method and whichever of its ablations this run has."""
    means = method_means(results, i3d)
    means = means[means["method"].isin(ABLATIONS)].copy()
    means.insert(1, "variant", means["method"].map(ABLATIONS))
    columns = [
        Column("method", "method"),
        Column("variant", "variant"),
        Column("items", "items", "d"),
        *metric_columns(),
        *fvd_columns(),
    ]
    present = list(means["method"])
    absent = [m for m in ABLATIONS if m not in present]
    notes = _partial_notes(means) + _failed_note(means) + _item_set_note(results, present)
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
        shared_notes=context_notes(results),
    )
