"""Figures a person looks at: the ODA curves (the paper's Fig. 5/6) and the loss curves (Table IV).

matplotlib with the Agg backend, written through storage as PNG.
"""

from __future__ import annotations

import dataclasses
import io
import math
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from align4d_core.io import storage  # noqa: E402
from align4d_core.method.oda import SearchResult  # noqa: E402


def _save(fig, uri: str) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    storage.write_bytes(uri, buffer.getvalue())


def _curve(values: list[float | None]) -> list[float]:
    """None (a distance the bounded VAOD sweep did not render) as NaN: a gap in the line."""
    return [math.nan if v is None else v for v in values]


def _draw_vaod(ax, result: SearchResult) -> None:
    skipped = any(v is None for v in result.vaod_mse)
    # with skipped distances the rendered ones may stand alone between gaps: mark every point
    style = {"marker": "o" if skipped else ".", "markersize": 5 if skipped else 4, "zorder": 3}
    ax.plot(result.distances, _curve(result.vaod_mse), label="MSE to frame 1", **style)
    if result.vaod_mse_masked is not None:
        ax.plot(result.distances, _curve(result.vaod_mse_masked), label="MSE inside the masks", alpha=0.8, **style)
    if skipped:
        if result.vaod_bound is not None:  # where each left-out distance's MSE lies at least
            ax.plot(
                result.distances,
                _curve(result.vaod_bound),
                linestyle="none",
                marker="^",
                markersize=4,
                markerfacecolor="none",
                color="tab:gray",
                label="left out: MSE at least this",
            )
        else:
            ax.plot([], [], " ", label="gaps: provably above the minimum, not rendered")
        ax.set_xlim(min(result.distances), max(result.distances))  # the whole sweep, gaps included
    ax.axvline(result.vaod, color="tab:red", linestyle="--", label=f"VAOD {result.vaod:.2f}")
    ax.set(xlabel="object distance", ylabel="MSE", title="video-aligned distance")
    ax.legend(fontsize=7, loc="upper right")


def _draw_maod(ax, result: SearchResult) -> None:
    if result.maod_sds is None:  # no probe (anchor guidance): say why instead of an empty frame
        ax.text(
            0.5,
            0.5,
            "\n".join(textwrap.wrap(f"no MAOD probe: {result.maod_rule}", 40)),
            ha="center",
            va="center",
            transform=ax.transAxes,
            fontsize=9,
        )
        ax.set(xticks=[], yticks=[], title="multiview-aligned distance")
        return
    ax.plot(result.distances, result.maod_sds, color="tab:purple", label="SDS probe (τ 700/800/900)")
    ax.axvline(result.vaod, color="tab:red", linestyle="--", label=f"VAOD {result.vaod:.2f}")
    ax.axvline(result.maod, color="tab:green", linestyle="-.", label=f"MAOD {result.maod:.2f}")
    ax.set(xlabel="object distance", ylabel="SDS loss", title="multiview-aligned distance")
    ax.legend(fontsize=8)


def search_result(data: dict) -> SearchResult:
    """A :class:`SearchResult` from a ``search.json`` (which also holds keys such as ``guidance``)."""
    names = {f.name for f in dataclasses.fields(SearchResult)}
    return SearchResult(**{k: v for k, v in data.items() if k in names})


def plot_search(result: SearchResult, uri: str, title: str = "") -> None:
    """MSE-vs-distance (VAOD, eq. 4) and SDS-vs-distance (MAOD, eq. 5) with the chosen distances."""
    panels = 2 if result.maod_sds is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 3.6), squeeze=False)
    _draw_vaod(axes[0, 0], result)
    if result.maod_sds is not None:
        _draw_maod(axes[0, 1], result)
    if title:
        fig.suptitle(title)
    _save(fig, uri)


def plot_search_grid(results: dict[str, SearchResult], uri: str, title: str = "") -> None:
    """The paper's Fig. 5/6 for a whole run: one row per item, its VAOD and MAOD curves side by side."""
    if not results:
        raise ValueError("plot_search_grid needs at least one search result")
    fig, axes = plt.subplots(len(results), 2, figsize=(11, 3.2 * len(results)), squeeze=False)
    for row, (label, result) in enumerate(results.items()):
        _draw_vaod(axes[row, 0], result)
        _draw_maod(axes[row, 1], result)
        axes[row, 0].set_title(f"{label}: video-aligned distance")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    _save(fig, uri)


def mean_history(histories: list[list[dict]], key: str = "loss") -> list[dict]:
    """Per step, the mean of ``key`` over the histories that recorded that step."""
    values: dict[int, list[float]] = {}
    for history in histories:
        for record in history:
            if key in record:
                values.setdefault(int(record["step"]), []).append(float(record[key]))
    return [{"step": step, key: sum(v) / len(v)} for step, v in sorted(values.items())]


def plot_losses(curves: dict[str, list[dict]], uri: str, key: str = "loss", title: str = "", smooth: int = 0) -> None:
    """One line per run (e.g. AO and JO): ``key`` of each step's record against the step.

    With ``smooth`` > 1 the raw curve is drawn faintly under its running mean over that many steps.
    The y axis is logarithmic when every value is positive.
    """
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    positive = True
    for index, (label, history) in enumerate(curves.items()):
        points = [(r["step"], r[key]) for r in history if key in r]
        if not points:
            continue
        steps, values = zip(*points)
        positive = positive and min(values) > 0
        colour = f"C{index}"
        if smooth > 1:
            ax.plot(steps, values, color=colour, linewidth=0.6, alpha=0.3)
            running = [
                sum(values[max(0, k - smooth + 1) : k + 1]) / len(values[max(0, k - smooth + 1) : k + 1])
                for k in range(len(values))
            ]
            ax.plot(steps, running, color=colour, linewidth=1.2, label=f"{label} (mean of {smooth} steps)")
        else:
            ax.plot(steps, values, color=colour, label=label, linewidth=1.0)
    ax.set(xlabel="step", ylabel=key, yscale="log" if positive else "linear", title=title or key)
    ax.legend()
    _save(fig, uri)
