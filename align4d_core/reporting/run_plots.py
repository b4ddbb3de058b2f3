"""The run-level figures under ``<run>/plots/``: every item's ODA curves, and AO against JO.

* ``plots/search.png``        one row per item: MSE-vs-distance (VAOD) and SDS-vs-distance (MAOD),
                              from the first method of the item (in paper order) whose search swept
                              the distances (``no-oda`` does not search)
* ``plots/ao_vs_jo.png``      the mean loss curve over items of AO (``align4d``) and JO (``no-ao``)
* ``plots/ao_vs_jo/<item>.png``  the same for each item

A figure is written only when its data exist (a run without ``no-ao`` has no AO/JO figures); the
per-item search figure stays where the search stage wrote it, ``items/<item>/<method>/plots/``.
"""

from __future__ import annotations

from align4d_core.io import storage
from align4d_core.pipeline.plots import mean_history, plot_losses, plot_search_grid, search_result
from align4d_core.reporting.tables.context import method_order

MAX_GRID_ITEMS = 30
"""Items in the run-level search figure; a larger run shows its first ones and says so in the title."""

SMOOTH_STEPS = 10


def search_curves(searches: dict[tuple[str, str], dict]) -> dict[str, tuple[str, dict]]:
    """Per item, (method, search.json) of the first method in paper order with a swept curve."""
    out: dict[str, tuple[str, dict]] = {}
    for method in method_order({m for _, m in searches}):
        for (item, m), data in sorted(searches.items()):
            if m == method and item not in out and data.get("distances"):
                out[item] = (method, data)
    return dict(sorted(out.items()))


def write_run_plots(
    run_root: str, searches: dict[tuple[str, str], dict], histories: dict[tuple[str, str], list[dict]]
) -> dict[str, str]:
    """Write the run-level figures; returns their URIs by name (``search``, ``ao_vs_jo``, ``ao_vs_jo/<item>``)."""
    uris: dict[str, str] = {}
    curves = search_curves(searches)
    if curves:
        shown = list(curves.items())[:MAX_GRID_ITEMS]
        title = "ODA curves per item"
        if len(curves) > MAX_GRID_ITEMS:
            title += f" (first {MAX_GRID_ITEMS} of {len(curves)} items)"
        uris["search"] = storage.join(run_root, "plots", "search.png")
        plot_search_grid(
            {f"{item} ({method})": search_result(data) for item, (method, data) in shown}, uris["search"], title=title
        )
    both = sorted({i for i, m in histories if m == "align4d"} & {i for i, m in histories if m == "no-ao"})
    if both:
        ao = [histories[(i, "align4d")] for i in both]
        jo = [histories[(i, "no-ao")] for i in both]
        uris["ao_vs_jo"] = storage.join(run_root, "plots", "ao_vs_jo.png")
        plot_losses(
            {"AO (align4d)": mean_history(ao), "JO (no-ao)": mean_history(jo)},
            uris["ao_vs_jo"],
            title=f"AO vs JO: mean loss over {len(both)} item(s)",
            smooth=SMOOTH_STEPS,
        )
        for item in both:
            uri = storage.join(run_root, "plots", "ao_vs_jo", f"{item}.png")
            plot_losses(
                {"AO (align4d)": histories[(item, "align4d")], "JO (no-ao)": histories[(item, "no-ao")]},
                uri,
                title=f"AO vs JO on {item}",
                smooth=SMOOTH_STEPS,
            )
            uris[f"ao_vs_jo/{item}"] = uri
    return uris
