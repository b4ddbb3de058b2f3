"""The paper's Table IV: the loss of alternating (AO, ``align4d``) and joint (JO, ``no-ao``) optimisation.

The value at step s is the mean of an item's per-step loss over the steps within ``half_window`` of s
(one step's loss is noisy: each step draws its own frames, views and noise), then the mean over the
items both methods completed, so that the two rows compare the same items. A step beyond the end of
a run (the CPU profile runs fewer than 500 steps) is blank, and the notes say why.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import pandas as pd

from align4d_core.config import CPU_PROFILE
from align4d_core.reporting.tables.context import completed, context_notes
from align4d_core.reporting.tables.table import Column, Table

STEPS = (100, 200, 300, 400, 500)
HALF_WINDOW = 10
RUNS = {"align4d": "AO (alternating)", "no-ao": "JO (joint)"}

History = list[dict]


def windowed_loss(history: History, step: int, half_window: int = HALF_WINDOW, key: str = "loss") -> float | None:
    """Mean of ``key`` over the records with ``|record.step - step| <= half_window``; None past the run."""
    if not history or step > last_step(history):
        return None
    values = [float(r[key]) for r in history if key in r and abs(int(r["step"]) - step) <= half_window]
    return statistics.fmean(values) if values else None


def last_step(history: History) -> int:
    return max((int(r["step"]) for r in history), default=0)


def _items(results: pd.DataFrame, histories: dict[tuple[str, str], History]) -> dict[str, list[str]]:
    """The items each method's row averages: those both methods completed, when both ran."""
    done = completed(results)
    have = {m: {i for i in done.loc[done["method"] == m, "item"] if (i, m) in histories} for m in RUNS}
    both = have["align4d"] & have["no-ao"]
    if both:
        return {m: sorted(both) for m in RUNS}
    return {m: sorted(items) for m, items in have.items()}


def losses_frame(
    results: pd.DataFrame,
    histories: dict[tuple[str, str], History],
    steps: Sequence[int] = STEPS,
    half_window: int = HALF_WINDOW,
    key: str = "loss",
) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """One row per AO/JO with the mean windowed loss at each step, and the items each row averages."""
    items = _items(results, histories)
    records = []
    for method, label in RUNS.items():
        record = {"method": method, "optimisation": label, "items": len(items[method])}
        for step in steps:
            values = [windowed_loss(histories[(i, method)], step, half_window, key) for i in items[method]]
            values = [v for v in values if v is not None]
            record[f"step_{step}"] = statistics.fmean(values) if values else None
        records.append(record)
    return pd.DataFrame(records), items


def _reach_notes(
    histories: dict[tuple[str, str], History], items: dict[str, list[str]], steps: Sequence[int]
) -> list[str]:
    notes = []
    for method, label in RUNS.items():
        lengths = sorted({last_step(histories[(i, method)]) for i in items[method]})
        if not lengths:
            continue
        beyond = [s for s in steps if s > max(lengths)]
        partly = [s for s in steps if min(lengths) < s <= max(lengths)]
        runs = "/".join(map(str, lengths))
        if beyond:
            notes.append(
                f"{label}: steps {', '.join(map(str, beyond))} are blank: beyond the run's {runs} "
                f"optimisation steps (optimize.steps; the CPU profile runs {CPU_PROFILE['optimize']['steps']})."
            )
        if partly:
            notes.append(
                f"{label}: at steps {', '.join(map(str, partly))} only the items whose run reached the step "
                "are averaged."
            )
    return notes


def losses_table(
    results: pd.DataFrame,
    histories: dict[tuple[str, str], History],
    steps: Sequence[int] = STEPS,
    half_window: int = HALF_WINDOW,
    key: str = "loss",
) -> Table:
    """Table IV: AO against JO at steps 100 … 500."""
    frame, items = losses_frame(results, histories, steps, half_window, key)
    columns = [Column("method", "method"), Column("optimisation", "optimisation"), Column("items", "items", "d")]
    columns += [Column(f"step_{s}", f"step {s}", ".4g") for s in steps]
    notes: list[str] = []
    notes.append(
        f"Each value: the mean of the per-step '{key}' over steps s-{half_window} … s+{half_window} of an "
        "item's optimisation (losses.json), then the mean over items."
    )
    if items["align4d"] and items["align4d"] == items["no-ao"]:
        notes.append(f"Both rows average the same {len(items['align4d'])} item(s): {', '.join(items['align4d'])}.")
    elif items["align4d"] and items["no-ao"]:
        notes.append("No item completed under both AO and JO, so the rows average different items.")
    for method, label in RUNS.items():
        if not items[method]:
            ran = method in set(results["method"])
            why = "has no completed item with a loss history" if ran else "was not run"
            notes.append(f"{label} ({method}) {why}; run with --methods align4d,no-ao to compare AO and JO.")
    notes += _reach_notes(histories, items, steps)
    return Table(
        "losses",
        "Loss of alternating (AO) against joint (JO) optimisation (cf. the paper's Table IV)",
        frame,
        columns,
        notes,
        shared_notes=context_notes(results),
    )
