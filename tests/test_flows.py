"""Flow ``align4d`` under Prefect's test harness: tables, failures, reruns, resume after a kill, S3.

One harness per session (it takes ~20 s to start); every run uses a fast config on the small sample.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
from killing import sigkill_when

from align4d_core.config import SampleConfig
from align4d_core.errors import InputError
from align4d_core.io import storage
from align4d_core.io.manifest import MANIFEST_NAME
from align4d_core.pipeline.runs import RunSpec, item_folder
from align4d_core.sample import write_sample

FAST = {"optimize": {"steps": 3, "frames_per_step": 2, "resolution_schedule": [[1.0, 32]]}}
ITEMS = ("twist_column", "arm_swing")


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("flow-sample") / "sample")
    write_sample(root, SampleConfig(frames=4, size=48, gaussians=600, items=ITEMS))
    return root


def run_flow(dataset: str, out: str, settings=FAST, methods=("align4d",), **kwargs):
    from flows.align4d import align4d

    return align4d(dataset=dataset, out=out, settings=settings, methods=list(methods), return_state=True, **kwargs)


def results(out: str, settings=FAST, methods=("align4d",), dataset: str = "") -> pd.DataFrame:
    spec = RunSpec(dataset, out, settings, tuple(methods))
    return pd.read_csv(storage.join(spec.root, "tables", "results.csv"))


def test_the_flow_writes_one_row_per_item_and_method_and_publishes_artifacts(harness, dataset, tmp_path):
    out = str(tmp_path / "runs")
    state = run_flow(dataset, out, methods=("align4d", "no-oda"))
    assert state.is_completed(), state.message
    table = results(out, methods=("align4d", "no-oda"), dataset=dataset)
    assert sorted(zip(table["item"], table["method"])) == sorted((i, m) for i in ITEMS for m in ("align4d", "no-oda"))
    assert (table["status"] == "completed").all() and table["psnr"].gt(10).all() and table["ssim"].between(0, 1).all()
    assert set(table.loc[table["method"] == "no-oda", "vaod"]) == {1.5}
    spec = RunSpec(dataset, out, FAST, ("align4d", "no-oda"))
    assert "Guidance backend: zero123 (bundled prior v1)" in storage.read_text(
        storage.join(spec.root, "tables", "summary.md")
    )
    assert storage.exists(storage.join(item_folder(spec.root, "arm_swing", "align4d"), "videos", "turntable.mp4"))

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["align4d-results"])))
    assert found and found[0].type == "table"


def test_a_rerun_recomputes_nothing(harness, dataset, tmp_path):
    out = str(tmp_path / "runs")
    assert run_flow(dataset, out).is_completed()
    spec = RunSpec(dataset, out, FAST, ("align4d",))
    marker = storage.join(item_folder(spec.root, "twist_column", "align4d"), "stages", "optimize", "done.json")
    before = storage.read_json(marker)["finished_at"]
    started = time.perf_counter()
    assert run_flow(dataset, out).is_completed()
    assert storage.read_json(marker)["finished_at"] == before
    assert time.perf_counter() - started < 30


def test_bad_items_are_failed_rows_and_the_others_complete(harness, dataset, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(dataset, broken)
    (broken / "items/arm_swing/object.ply").unlink()  # a missing object
    lines = (broken / MANIFEST_NAME).read_text().splitlines()
    lines.append('{"id": "escape", "source": "video", "video": "../../outside", "object": "x.ply"}')
    lines.append("this line is not JSON")
    (broken / MANIFEST_NAME).write_text("\n".join(lines) + "\n")
    out = str(tmp_path / "runs")
    state = run_flow(str(broken), out)
    assert state.is_failed() and "1 of 4 item runs completed" in state.message
    table = results(out, dataset=str(broken)).set_index("item")
    assert table.loc["twist_column", "status"] == "completed"
    assert table.loc["arm_swing", "status"] == "failed"
    assert "item 'arm_swing' field 'object'" in table.loc["arm_swing", "error"]
    assert "escapes the dataset root" in table.loc["escape", "error"]
    assert "not valid JSON" in table.loc["line-4", "error"]
    assert not (tmp_path / "outside").exists()


def test_two_runs_with_different_settings_share_an_out_without_touching_each_other(harness, dataset, tmp_path):
    out = str(tmp_path / "runs")
    other = {"optimize": {**FAST["optimize"], "steps": 2}}
    assert run_flow(dataset, out, items=["twist_column"]).is_completed()
    (first,) = [p for p in Path(out).iterdir() if (p / "run.json").exists()]
    before = {p: p.read_bytes() for p in first.rglob("*") if p.is_file() and ".prefect-results" not in p.parts}
    assert run_flow(dataset, out, settings=other, items=["twist_column"]).is_completed()
    runs = [p for p in Path(out).iterdir() if (p / "run.json").exists()]
    assert len(runs) == 2 and all((p / "tables" / "results.csv").exists() for p in runs)
    after = {p: p.read_bytes() for p in first.rglob("*") if p.is_file() and ".prefect-results" not in p.parts}
    assert after == before  # the second run wrote only into its own folder


def test_unknown_item_ids_are_refused(harness, dataset, tmp_path):
    with pytest.raises(InputError, match="no item 'nope'"):
        from flows.align4d import align4d

        align4d(dataset=dataset, out=str(tmp_path), settings=FAST, items=["nope"])


def test_the_run_writes_to_s3(harness, dataset, s3_bucket):
    state = run_flow(dataset, s3_bucket, items=["twist_column"])
    assert state.is_completed(), state.message
    spec = RunSpec(dataset, s3_bucket, FAST, ("align4d",), ("twist_column",))
    with storage.local_copy(storage.join(spec.root, "tables", "results.csv")) as local:
        table = pd.read_csv(local)
    assert list(table["status"]) == ["completed"]
    assert storage.exists(storage.join(item_folder(spec.root, "twist_column", "align4d"), "object", "canonical.ply"))


KILLED = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {repo!r})
    from flows.align4d import align4d
    align4d(dataset={dataset!r}, out={out!r}, settings={settings!r}, methods=["align4d"])
    """
)


def test_a_run_killed_mid_optimisation_resumes_and_ends_with_the_same_tables(harness, dataset, tmp_path):
    settings = {"optimize": {**FAST["optimize"], "steps": 40, "checkpoint_every": 5}}
    straight = str(tmp_path / "straight")
    assert run_flow(dataset, straight, settings=settings).is_completed()

    out = str(tmp_path / "killed")
    spec = RunSpec(dataset, out, settings, ("align4d",))
    second = Path(item_folder(spec.root, ITEMS[1], "align4d"))  # items run in manifest order
    env = {**os.environ, "PREFECT_API_URL": harness}
    script = KILLED.format(repo=str(Path(__file__).parents[1]), dataset=dataset, out=out, settings=settings)
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    sigkill_when(proc, (second / "checkpoints" / "latest.json").exists, 300, "got the second item to a checkpoint")
    assert proc.returncode == -signal.SIGKILL
    first = Path(item_folder(spec.root, ITEMS[0], "align4d"))
    finished_before = storage.read_json(str(first / "stages" / "optimize" / "done.json"))["finished_at"]
    assert not (second / "stages" / "optimize" / "done.json").exists()

    assert run_flow(dataset, out, settings=settings).is_completed()
    assert storage.read_json(str(first / "stages" / "optimize" / "done.json"))["finished_at"] == finished_before
    resumed = storage.read_json(str(second / "stages" / "optimize" / "done.json"))["extra"]["resumed_from"]
    assert resumed is not None and resumed >= 5
    a = results(straight, settings=settings, dataset=dataset)
    b = results(out, settings=settings, dataset=dataset)
    for column in ("item", "method", "status", "vaod", "maod", "gaussians"):
        assert list(a[column]) == list(b[column]), column
    pd.testing.assert_series_equal(a["psnr"], b["psnr"], rtol=1e-4)
    pd.testing.assert_series_equal(a["ssim"], b["ssim"], rtol=1e-4)


def test_a_broken_zero123_model_fails_every_row_and_the_run_still_ends(harness, dataset, tmp_path):
    """A truncated download is an item error with the component named, never a crash or a silent anchor run."""
    from tiny_zero123 import SIZE, truncate, weight_file, write_port

    folder = write_port(tmp_path / "zero123")
    truncate(weight_file(folder, "unet"))
    settings = {**FAST, "guidance": {"backend": "auto", "model": str(folder), "input_size": SIZE}}
    out = str(tmp_path / "runs")
    state = run_flow(dataset, out, settings=settings)
    assert state.is_failed() and "0 of 2 item runs completed" in state.message
    table = results(out, settings=settings, dataset=dataset)
    assert (table["status"] == "failed").all()
    assert table["error"].str.contains("IncompleteModelError").all()
    assert table["error"].str.contains("component unet/").all() and table["error"].str.contains("truncated").all()
