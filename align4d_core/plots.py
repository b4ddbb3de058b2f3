"""Figures a person looks at: the ODA curves (the paper's Fig. 5/6) and the loss curves (Table IV).

matplotlib with the Agg backend, written through storage as PNG.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from . import storage  # noqa: E402
from .oda import SearchResult  # noqa: E402


def _save(fig, uri: str) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    storage.write_bytes(uri, buffer.getvalue())


def plot_search(result: SearchResult, uri: str, title: str = "") -> None:
    """MSE-vs-distance (VAOD, eq. 4) and SDS-vs-distance (MAOD, eq. 5) with the chosen distances."""
    panels = 2 if result.maod_sds is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 3.6), squeeze=False)
    ax = axes[0, 0]
    ax.plot(result.distances, result.vaod_mse, label="MSE to frame 1")
    if result.vaod_mse_masked is not None:
        ax.plot(result.distances, result.vaod_mse_masked, label="MSE inside the masks", alpha=0.8)
    ax.axvline(result.vaod, color="tab:red", linestyle="--", label=f"VAOD {result.vaod:.2f}")
    ax.set(xlabel="object distance", ylabel="MSE", title="video-aligned distance")
    ax.legend(fontsize=8)
    if result.maod_sds is not None:
        ax = axes[0, 1]
        ax.plot(result.distances, result.maod_sds, color="tab:purple", label="SDS probe (τ 700/800/900)")
        ax.axvline(result.vaod, color="tab:red", linestyle="--", label=f"VAOD {result.vaod:.2f}")
        ax.axvline(result.maod, color="tab:green", linestyle="-.", label=f"MAOD {result.maod:.2f}")
        ax.set(xlabel="object distance", ylabel="SDS loss", title="multiview-aligned distance")
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    _save(fig, uri)


def plot_losses(curves: dict[str, list[dict]], uri: str, key: str = "loss", title: str = "") -> None:
    """One line per run (e.g. AO and JO): ``key`` of each step's record against the step."""
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for label, history in curves.items():
        points = [(r["step"], r[key]) for r in history if key in r]
        if points:
            ax.plot(*zip(*points), label=label, linewidth=1.0)
    ax.set(xlabel="step", ylabel=key, yscale="log", title=title or key)
    ax.legend()
    _save(fig, uri)
