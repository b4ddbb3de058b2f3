"""``align4d run``'s progress display costs a bounded number of storage requests (issue 15).

It used to count finished item runs by listing the run folder on S3 every 2 s: a LIST of ``items/``,
a HEAD of each ``row.json`` and a LIST behind each HEAD that found none — hundreds of requests per
poll for a 200-item run. The requests are counted at botocore, against the moto server on 127.0.0.1.
"""

from __future__ import annotations

import collections
import json

import pytest

from align4d.cli import poll_progress
from align4d_core.io import storage
from align4d_core.io.manifest import MANIFEST_NAME
from align4d_core.pipeline.runs import RunSpec, item_folder, item_run_ended, watch_progress

ITEMS, ENDED, POLLS = 200, 150, 5


@pytest.fixture
def s3_requests():
    """``start(uri)`` counts every S3 API call (one per request, pages included) of ``uri``'s filesystem."""
    hooked = []
    calls: collections.Counter[str] = collections.Counter()

    def count(model, **_) -> None:
        calls[model.name] += 1

    def start(uri: str) -> collections.Counter[str]:
        storage.exists(uri)  # the client exists once the filesystem made a request
        events = storage.filesystem(uri)[0].s3.meta.events
        events.register("before-call.s3", count)
        hooked.append(events)
        return calls

    yield start
    for events in hooked:
        events.unregister("before-call.s3", count)


def test_polling_a_200_item_run_on_s3_makes_a_bounded_number_of_requests(s3_bucket, s3_requests):
    run_root = storage.join(s3_bucket, "runs", "r1")
    ids = [f"item-{k:03d}" for k in range(ITEMS)]
    files = {storage.join(item_folder(run_root, i, "align4d"), "stages", "search", "done.json"): b"{}" for i in ids}
    files |= {storage.join(item_folder(run_root, i, "align4d"), "row.json"): b"{}" for i in ids[:ENDED]}
    fs = storage.filesystem(run_root)[0]
    fs.pipe({storage.filesystem(uri)[1]: data for uri, data in files.items()})  # concurrent PUTs

    with watch_progress(run_root) as progress:
        for item_id in ids[:ENDED]:
            item_run_ended(run_root, item_id, "align4d")
        calls = s3_requests(run_root)
        counts = [poll_progress(progress) for _ in range(POLLS)]

    assert counts == [ENDED] * POLLS
    assert calls["ListObjectsV2"] <= 2 * POLLS, dict(calls)
    assert sum(calls.values()) <= 2 * POLLS, dict(calls)  # HEADs too: bounded, whatever ITEMS is


def test_progress_counts_each_item_run_once_and_only_while_watched():
    root = "memory://align4d-progress/runs/r2/"  # reported without the trailing slash: the same run
    item_run_ended(root, "before", "align4d")  # nobody watches: nothing happens
    with watch_progress(root) as progress, watch_progress("memory://other") as other:
        for item_id, method in [("a", "align4d"), ("a", "no-oda"), ("a", "align4d"), ("b", "align4d")]:
            item_run_ended(root.rstrip("/"), item_id, method)
        assert poll_progress(progress) == 3 and poll_progress(other) == 0
    item_run_ended(root, "c", "align4d")
    assert progress.count == 3


def test_the_flow_reports_each_item_run_as_it_ends(harness, tmp_path):
    """The flow that ``align4d run`` runs in-process updates the display's counter: two items whose
    files are missing fail at once in the pair stage, and both ended runs are counted."""
    from flows.align4d import align4d

    dataset, out = tmp_path / "dataset", str(tmp_path / "runs")
    dataset.mkdir()
    lines = [{"id": i, "source": "video", "video": f"{i}/video.mp4", "object": f"{i}/object.ply"} for i in "ab"]
    (dataset / MANIFEST_NAME).write_text("".join(json.dumps(line) + "\n" for line in lines))
    spec = RunSpec(str(dataset), out, {}, ("align4d",))
    with watch_progress(spec.root) as progress:
        state = align4d(dataset=str(dataset), out=out, settings={}, methods=["align4d"], return_state=True)
        assert state.is_failed() and "0 of 2 item runs completed" in state.message
        assert poll_progress(progress) == 2
