"""report.html in a real browser: Debian's headless Chromium, driven by Selenium.

The page must load without a console error, show every table, play every video and show every
figure, from the file alone (it is copied into an empty folder first) and from an object store
(the S3 server of the tests, the object fetched by the browser through a presigned URL). The screenshot is kept in
``test-artifacts/`` at the repository root (git-ignored). Without Chromium these tests fail, with the
command that installs it: they are the only check that the page really works.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import browser as browser_module
import pytest
from run_fixture import FAILED_MESSAGE, ITEMS, VALUES, write_run

from align4d_core.io import storage
from align4d_core.reporting.publish import publish_run

ARTIFACTS = browser_module.ARTIFACTS

COMPLETED = len(VALUES)  # (item, method) runs that finished, each with two videos and a loss figure
SEARCHED = sum(1 for (_, m) in VALUES if m != "no-oda")  # runs whose search swept the distances
FIGURES = 2 + SEARCHED + COMPLETED + len(ITEMS)  # run-level ODA + AO/JO, per-run ODA + loss, per-item AO/JO


@pytest.fixture(scope="module")
def browser():
    driver = browser_module.chromium("--disable-gpu")
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("report") / "run")
    return root, publish_run(root, write_run(root))


def open_page(driver, url: str) -> list[dict]:
    """Load ``url``, wait until every video has its data (or failed), return the console log."""
    driver.get_log("browser")  # drop what an earlier page logged
    driver.get(url)
    deadline = time.time() + 30
    script = (
        "return document.readyState === 'complete' && "
        "[...document.querySelectorAll('video')].every(v => v.readyState >= 2 || v.error)"
    )
    while not driver.execute_script(script):
        assert time.time() < deadline, "the page's videos never loaded"
        time.sleep(0.2)
    return driver.get_log("browser")


def check_page(driver, publication, log: list[dict]) -> None:
    severe = [entry for entry in log if entry.get("level") == "SEVERE"]
    assert not severe, severe
    captions = driver.execute_script("return [...document.querySelectorAll('table > caption')].map(c => c.textContent)")
    assert captions == [table.title for table in publication.tables]
    body_rows = driver.execute_script(
        "return [...document.querySelectorAll('table')].map(t => [t.dataset.table, t.tBodies[0].rows.length])"
    )
    assert body_rows == [[t.name, max(len(t.frame), 1)] for t in publication.tables]
    videos = driver.execute_script(
        "return [...document.querySelectorAll('video')].map(v => ({error: v.error && v.error.code, "
        "state: v.readyState, duration: v.duration, width: v.videoWidth, src: v.currentSrc.slice(0, 22)}))"
    )
    assert len(videos) == 2 * COMPLETED
    for video in videos:
        assert video["error"] is None and video["state"] >= 2 and video["duration"] > 0, video
        assert video["width"] in (32, 64) and video["src"] == "data:video/mp4;base64,"
    images = driver.execute_script(
        "return [...document.images].map(i => [i.complete, i.naturalWidth, i.src.slice(0, 22)])"
    )
    assert len(images) == FIGURES
    assert all(done and width > 0 and src == "data:image/png;base64," for done, width, src in images), images
    external = driver.execute_script(
        "return [...document.querySelectorAll('[src],[href],link')].map(e => e.getAttribute('src') || "
        "e.getAttribute('href')).filter(u => !u.startsWith('data:') && !u.startsWith('#'))"
    )
    assert external == []
    assert driver.execute_script("return document.scripts.length") == 0  # the failed row's <script> is text
    errors = driver.execute_script(
        "return [...document.querySelectorAll('.run.failed .error')].map(e => e.textContent)"
    )
    assert len(errors) == 1 and FAILED_MESSAGE in errors[0]
    items = driver.execute_script(
        "return [...document.querySelectorAll('article[data-item]')].map(a => a.dataset.item)"
    )
    assert items == sorted(ITEMS)


def screenshot(driver, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    height = min(int(driver.execute_script("return document.body.scrollHeight")), 12000)
    driver.set_window_size(1280, height)
    path = ARTIFACTS / name
    assert driver.save_screenshot(str(path)), path
    print(f"report screenshot: {path}")
    return path


def test_the_report_file_alone_loads_without_errors_and_shows_every_table_video_and_figure(
    browser, published, tmp_path
):
    root, publication = published
    alone = tmp_path / "alone" / "report.html"  # nothing beside it: everything must be inside
    alone.parent.mkdir()
    shutil.copyfile(Path(root) / "report.html", alone)
    check_page(browser, publication, open_page(browser, alone.as_uri()))
    assert screenshot(browser, "report.png").stat().st_size > 10_000


def test_the_report_opens_from_an_object_store(browser, published, s3_server, s3_bucket):
    local_root, _ = published
    fs, path = storage.filesystem(s3_bucket)
    fs.put(str(Path(local_root) / "items"), f"{path}/items", recursive=True)
    fs.put(str(Path(local_root) / "run.json"), f"{path}/run.json")
    publication = publish_run(s3_bucket)  # rebuilt from the object store's row files
    assert storage.exists(storage.join(s3_bucket, "report.html"))
    url = fs.url(f"{path}/report.html", expires=600)  # a presigned URL: how one shares a private object
    assert url.startswith(s3_server)
    check_page(browser, publication, open_page(browser, url))
    assert browser.execute_script("return document.contentType") == "text/html"
    screenshot(browser, "report-s3.png")


def test_videos_above_the_embedding_limit_are_linked_relative_to_the_run_folder(published):
    from align4d_core.reporting.report import render_report
    from align4d_core.reporting.tables import read_run_json

    root, publication = published
    page = render_report(root, publication.tables, publication.results, {}, read_run_json(root), max_embed_bytes=10)
    assert 'src="items/a_item/align4d/videos/turntable.mp4"' in page and "data:video/mp4" not in page
    assert "(linked," in page and (Path(root) / "items/a_item/align4d/videos/turntable.mp4").exists()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page and "<script>" not in page
