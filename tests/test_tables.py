"""The run's rows and tables (Tables II–V), from a run folder written by hand (tests/run_fixture.py).

Every expected number is computed here from the fixture's inputs, not copied from an output.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from run_fixture import FAILED, FAILED_MESSAGE, REASONS, SEARCH_SECONDS, STAGE_COST, STEPS, VALUES, loss_at, write_run

from align4d_core.io import storage
from align4d_core.reporting.publish import publish_run
from align4d_core.reporting.rows import METRICS, metric_columns, parse_missing
from align4d_core.reporting.tables import losses_table, read_rows, results_frame, windowed_loss

TABLES = ("results", "methods", "ablation", "losses", "cost")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[str, list[dict]]:
    root = str(tmp_path_factory.mktemp("tables") / "runs" / "fixture")
    rows = write_run(root)
    publish_run(root, rows)
    return root, rows


def csv(root: str, name: str) -> pd.DataFrame:
    return pd.read_csv(Path(root) / "tables" / f"{name}.csv", keep_default_na=True)


def text(root: str, name: str) -> str:
    return (Path(root) / "tables" / name).read_text()


# --- rows -----------------------------------------------------------------------------------------


def test_a_completed_row_has_every_metric_the_reasons_and_the_cost_of_each_stage(run):
    _, rows = run
    row = next(r for r in rows if (r["item"], r["method"]) == ("b-item", "align4d"))
    assert [row[m] for m in METRICS] == [22.0, 0.9, None, None, None, None]
    assert parse_missing(row["missing"]) == REASONS
    assert row["guidance"] == "zero123" and row["status"] == "completed" and row["error"] is None
    assert (row["seconds_search_vaod"], row["seconds_search_maod"]) == (SEARCH_SECONDS["vaod"], SEARCH_SECONDS["maod"])
    for stage, (seconds, peak) in STAGE_COST.items():
        assert row[f"seconds_{stage}"] == pytest.approx(2 * seconds)  # item b costs twice item a
        assert row[f"peak_memory_gib_{stage}"] == pytest.approx(peak)
    assert row["seconds_total"] == pytest.approx(2 * sum(s for s, _ in STAGE_COST.values()))
    assert row["peak_memory_gib"] == pytest.approx(max(p for _, p in STAGE_COST.values()))


def test_a_failed_row_keeps_the_error_and_where_it_was_raised(run):
    _, rows = run
    row = next(r for r in rows if (r["item"], r["method"]) == FAILED)
    assert row["status"] == "failed" and row["error"].startswith(f"RuntimeError: {FAILED_MESSAGE} (run_fixture.py:")


def test_metric_values_that_are_absent_or_not_finite_are_missing_with_a_reason():
    columns = metric_columns({"psnr": float("nan"), "ssim": 0.5, "missing": {"all": "no ground truth"}})
    assert columns["psnr"] is None and columns["ssim"] == 0.5
    reasons = parse_missing(columns["missing"])
    assert set(reasons) == set(METRICS) - {"ssim"}
    assert "not a finite number" in reasons["psnr"] and reasons["fvd"] == "no ground truth"
    assert metric_columns({m: 1.0 for m in METRICS})["missing"] is None


def test_missing_text_round_trips_reasons_that_hold_semicolons():
    columns = metric_columns({"missing": {"lpips": "a; b: c", "fvd": "d"}})
    assert parse_missing(columns["missing"])["lpips"] == "a; b: c"


# --- tables ---------------------------------------------------------------------------------------


def test_every_table_is_written_as_csv_markdown_and_latex(run):
    root, _ = run
    for name in TABLES:
        for suffix in ("csv", "md", "tex"):
            assert (Path(root) / "tables" / f"{name}.{suffix}").stat().st_size > 0, (name, suffix)
    summary = text(root, "summary.md")
    assert "Guidance backend: zero123." in summary
    assert all(f"## {title}" in summary for title in ("Results per item and method",))


def test_results_csv_has_one_row_per_item_and_method_with_every_column(run):
    root, rows = run
    table = csv(root, "results")
    assert len(table) == len(rows) == 6
    assert list(table.columns[:11]) == ["item", "method", "status", "error", "guidance", *METRICS]
    for (item, method), (psnr, ssim, lpips) in VALUES.items():
        line = table[(table["item"] == item) & (table["method"] == method)].iloc[0]
        assert (line["psnr"], line["ssim"]) == (psnr, ssim)
        assert pd.isna(line["lpips"]) if lpips is None else line["lpips"] == lpips
    failed = table[(table["item"] == FAILED[0]) & (table["method"] == FAILED[1])].iloc[0]
    assert failed["status"] == "failed" and FAILED_MESSAGE in failed["error"] and pd.isna(failed["psnr"])


def test_table_ii_means_per_method_match_the_hand_computed_ones(run):
    root, _ = run
    table = csv(root, "methods").set_index("method")
    assert list(table.index) == ["align4d", "no-oda", "no-ao"]  # the paper's order
    for method in ("align4d", "no-ao", "no-oda"):
        mine = [v for (_, m), v in VALUES.items() if m == method]
        assert table.loc[method, "items"] == len(mine)
        assert table.loc[method, "psnr"] == pytest.approx(np.mean([v[0] for v in mine]))
        assert table.loc[method, "ssim"] == pytest.approx(np.mean([v[1] for v in mine]))
    assert table.loc["no-oda", "failed"] == 1 and table.loc["align4d", "failed"] == 0
    assert table.loc["align4d", "lpips"] == pytest.approx(0.20)  # only a_item has it; the notes say so
    assert table[["clip", "clip_f", "fvd"]].isna().all().all()
    assert pd.isna(table.loc["no-ao", "lpips"])
    md = text(root, "methods.md")
    assert "align4d: lpips is the mean over 1 of its 2 completed items" in md
    assert "1 failed (item, method) run(s) are left out of the means" in md


def test_missing_metrics_are_empty_in_csv_and_dashes_with_their_reason_in_markdown_and_latex(run):
    root, _ = run
    raw = (Path(root) / "tables" / "methods.csv").read_text().splitlines()
    assert raw[1].startswith("align4d,2,0,21,0.85,0.2,,,")  # CLIP, CLIP-F, FVD: empty cells
    for name in ("results", "methods", "ablation"):
        md, tex = text(root, f"{name}.md"), text(root, f"{name}.tex")
        assert "—" in md and "---" in tex
        for rendered in (md, tex):
            assert "nan" not in rendered.lower().replace("nanmean", "") and "None" not in rendered
        assert f"FVD missing for all 5 completed run(s): {REASONS['fvd']}." in md
        assert "CLIP-F missing for all 5 completed run(s)" in tex
        assert "Guidance backend: zero123." in md and "Guidance backend: zero123." in tex
    methods_md = text(root, "methods.md").splitlines()
    align4d = next(line for line in methods_md if line.startswith("| align4d"))
    cells = [c.strip() for c in align4d.strip("|").split("|")]
    assert cells == ["align4d", "2", "0", "21.00", "0.850", "0.200", "—", "—", "—", "—", "—"]  # + pooled FVD, frames


def test_strings_from_the_data_are_escaped_in_markdown_and_latex(run):
    root, _ = run
    tex = text(root, "results.tex")
    assert r"a\_item" in tex and r"a\_b \& c" in tex and r"\textless{}script\textgreater{}" in tex
    md = text(root, "results.md")
    assert r"bad \| value &lt;script&gt;" in md
    line = next(line for line in md.splitlines() if "bad" in line)
    assert line.count(" | ") == 12  # the error's '|' did not add a column: 13 columns


def test_table_iii_lists_the_ablations_that_ran_and_names_the_others(run):
    root, _ = run
    table = csv(root, "ablation")
    assert list(table["method"]) == ["align4d", "no-oda", "no-ao"]
    assert list(table["variant"]) == ["Align4D (full)", "w/o ODA", "w/o AO"]
    assert table.set_index("method").loc["no-ao", "psnr"] == pytest.approx(20.0)
    assert "Not run: no-mgja." in text(root, "ablation.md")


def test_table_iii_says_so_when_no_ablation_ran(run):
    _, rows = run
    only_full = [r for r in rows if r["method"] == "align4d"]
    from align4d_core.reporting.tables import ablation_table

    table = ablation_table(results_frame(only_full))
    assert list(table.frame["method"]) == ["align4d"]
    assert any(n.startswith("The ablations were not run: this run's methods are align4d") for n in table.notes)


def test_table_iv_compares_ao_and_jo_and_leaves_the_steps_past_a_short_run_blank(run):
    root, _ = run
    table = csv(root, "losses").set_index("method")
    window = np.arange(90, 111)
    for method in ("align4d", "no-ao"):
        per_item = [np.mean([loss_at(method, item, k) for k in window]) for item in ("a_item", "b-item")]
        assert table.loc[method, "step_100"] == pytest.approx(np.mean(per_item))
        assert table.loc[method, "items"] == 2
        assert table.loc[method, ["step_200", "step_300", "step_400", "step_500"]].isna().all()
    assert table.loc["align4d", "step_100"] < table.loc["no-ao", "step_100"]
    md = text(root, "losses.md")
    assert f"steps 200, 300, 400, 500 are blank: beyond the run's {STEPS} optimisation steps" in md
    for line in (line for line in md.splitlines() if line.startswith(("| align4d", "| no-ao"))):
        assert [c.strip() for c in line.strip("|").split("|")][-4:] == ["—"] * 4


def test_table_iv_with_full_and_mixed_run_lengths():
    histories = {
        ("x", "align4d"): [{"step": s, "loss": 1.0} for s in range(1, 501)],
        ("x", "no-ao"): [{"step": s, "loss": float(s)} for s in range(1, 501)],
        ("y", "align4d"): [{"step": s, "loss": 3.0} for s in range(1, 251)],
        ("y", "no-ao"): [{"step": s, "loss": 0.0} for s in range(1, 251)],
    }
    rows = [{"item": i, "method": m, "status": "completed", "guidance": "anchor"} for i, m in histories]
    table = losses_table(results_frame(rows), histories)
    frame = table.frame.set_index("method")
    assert frame.loc["align4d", "step_100"] == pytest.approx(2.0)  # mean of x (1) and y (3)
    assert frame.loc["align4d", "step_300"] == pytest.approx(1.0)  # y stopped at 250: only x
    assert frame.loc["no-ao", "step_500"] == pytest.approx(np.mean(np.arange(490, 501)))  # clipped at the end
    assert frame.loc["no-ao", "step_100"] == pytest.approx(np.mean(np.arange(90, 111)) / 2)
    assert any("at steps 300, 400, 500 only the items whose run reached the step" in n for n in table.notes)
    assert windowed_loss(histories[("y", "align4d")], 260) is None


def test_table_iv_says_which_of_ao_and_jo_did_not_run(run):
    _, rows = run
    only_full = [r for r in rows if r["method"] == "align4d"]
    table = losses_table(results_frame(only_full), {})
    assert table.frame["step_100"].isna().all()
    assert any(n.startswith("JO (joint) (no-ao) was not run") for n in table.notes)


def test_table_v_costs_match_the_hand_computed_means(run):
    root, _ = run
    table = csv(root, "cost").set_index(["method", "stage"])
    mean = {stage: 1.5 * seconds for stage, (seconds, _) in STAGE_COST.items()}  # items a (x1) and b (x2)
    for method in ("align4d", "no-ao"):
        assert table.loc[(method, "search: VAOD"), "seconds"] == pytest.approx(SEARCH_SECONDS["vaod"])
        assert table.loc[(method, "search: MAOD"), "seconds"] == pytest.approx(SEARCH_SECONDS["maod"])
        assert pd.isna(table.loc[(method, "search: MAOD"), "peak_memory_gib"])
        for stage in STAGE_COST:
            label = "search (VAOD + MAOD)" if stage == "search" else stage
            assert table.loc[(method, label), "seconds"] == pytest.approx(mean[stage])
            assert table.loc[(method, label), "peak_memory_gib"] == pytest.approx(STAGE_COST[stage][1])
        generation = table.loc[(method, "generation (search + optimize)")]
        assert generation["seconds"] == pytest.approx(mean["search"] + mean["optimize"])
        assert generation["minutes"] == pytest.approx((mean["search"] + mean["optimize"]) / 60)
        assert table.loc[(method, "all stages"), "seconds"] == pytest.approx(sum(mean.values()))
    assert table.loc[("no-oda", "search: VAOD"), "items"] == 0  # no-oda does not search
    assert table.loc[("no-oda", "optimize"), "seconds"] == pytest.approx(STAGE_COST["optimize"][0])  # a_item only
    md = text(root, "cost.md")
    assert "no-oda: no MAOD search time for 1 of 1 item(s): oda off: fixed distance 1.5 (DreamGaussian4D)." in md


def test_run_level_plots_are_written(run):
    root, _ = run
    for name in ("search.png", "ao_vs_jo.png", "ao_vs_jo/a_item.png", "ao_vs_jo/b-item.png"):
        assert (Path(root) / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


# --- rebuilding from the folder -------------------------------------------------------------------


def test_a_row_that_never_got_written_is_a_not_run_row(run, tmp_path):
    root = str(shutil.copytree(run[0], tmp_path / "copy"))
    Path(root, "items", "a_item", "no-ao", "row.json").unlink()
    Path(root, "tables", "rows.json").unlink()
    rows = {(r["item"], r["method"]): r for r in read_rows(root)}
    assert rows[("a_item", "no-ao")]["status"] == "not run"
    assert len(rows) == 6


def test_align4d_tables_rebuilds_everything_from_the_run_folder(run, tmp_path):
    root = Path(shutil.copytree(run[0], tmp_path / "copy"))
    rows = storage.read_json(str(root / "tables" / "rows.json"))
    manifest_error = {"item": "line-9", "method": "align4d", "status": "failed", "error": "InputError: not valid JSON"}
    publish_run(str(root), rows + [manifest_error])  # what the flow passes: a row with no item folder
    before = {p.name: p.read_text() for p in (root / "tables").iterdir() if p.suffix != ".json"}
    shutil.rmtree(root / "plots")
    (root / "report.html").unlink()
    for path in (root / "tables").iterdir():
        if path.name != "rows.json":
            path.unlink()
    done = subprocess.run(
        [sys.executable, "-m", "align4d.cli", "tables", str(root)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Guidance backend: zero123." in done.stdout and str(root / "report.html") in done.stdout
    after = {p.name: p.read_text() for p in (root / "tables").iterdir() if p.suffix != ".json"}
    assert after == before and len(after) == 3 * len(TABLES) + 1
    assert "line-9" in after["results.csv"]
    assert (root / "report.html").stat().st_size > 0 and (root / "plots" / "search.png").exists()


def test_align4d_tables_refuses_a_folder_that_is_not_a_run(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "align4d.cli", "tables", str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2 and "not a run folder" in done.stderr and "Traceback" not in done.stderr


def test_table_v_has_a_pairs_row_only_when_some_pair_was_generated(run):
    from align4d_core.reporting.tables.cost import cost_frame

    root, _ = run
    rows = read_rows(root)
    assert "pairs (generated, shared by the methods)" not in set(cost_frame(results_frame(rows))["stage"])
    generated = [{**r, "seconds_pairs": 12.0 if r["item"] == "a_item" else None} for r in rows]
    frame = cost_frame(results_frame(generated)).set_index(["method", "stage"])
    row = frame.loc[("align4d", "pairs (generated, shared by the methods)")]
    assert row["seconds"] == pytest.approx(12.0) and row["items"] == 1
