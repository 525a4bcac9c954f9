"""The rendered report (adlib.report): the builder on tiny synthetic notebooks, and the site built from the
committed notebooks opened in a real headless browser (Debian's Chromium driven by Selenium).

The browser test fails on a broken local link, a missing or broken image, or an error output in a page, and saves
a screenshot of the index to $ADLIB_ARTIFACTS (default tests/artifacts/). Without chromium + chromedriver it is
skipped, unless ADLIB_REQUIRE_BROWSER=1 (CI sets it when it could install them), which turns the skip into a failure.
"""
from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urldefrag, urlparse

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from adlib import report

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


# ---- the builder, without a browser ------------------------------------------------------------------------

def _notebook(kind: str) -> nbformat.NotebookNode:
    cells = [new_markdown_cell(f"# Tiny {kind} notebook\n\nSee [the other one](b_error.ipynb).")]
    if kind == "ok":
        cells.append(new_code_cell("print(1)", execution_count=1,
                                   outputs=[new_output("stream", name="stdout", text="1\n")]))
    elif kind == "error":
        cells.append(new_code_cell("1/0", execution_count=1, outputs=[new_output(
            "error", ename="ZeroDivisionError", evalue="division by zero",
            traceback=["Traceback (most recent call last)", "ZeroDivisionError: division by zero"])]))
    else:  # never run
        cells.append(new_code_cell("print(1)"))
    nb = new_notebook(cells=cells)
    if kind != "unexecuted":
        nb.metadata["papermill"] = {"duration": 12.5 if kind == "ok" else 3.0, "parameters": {"profile": "smoke"},
                                    "exception": kind == "error" or None}
    return nb


@pytest.fixture()
def tiny_notebooks(tmp_path):
    folder = tmp_path / "executed"
    folder.mkdir()
    for name, kind in (("a_ok", "ok"), ("b_error", "error"), ("c_unexecuted", "unexecuted")):
        nbformat.write(_notebook(kind), folder / f"{name}.ipynb")
    return folder


def test_status_detection():
    assert report.notebook_status(_notebook("ok")) == report.STATUS_OK
    assert report.notebook_status(_notebook("error")) == report.STATUS_ERROR
    assert report.notebook_status(_notebook("unexecuted")) == report.STATUS_NOT_EXECUTED
    # an error output alone (no papermill metadata) is enough
    nb = _notebook("error")
    del nb.metadata["papermill"]
    assert report.notebook_status(nb) == report.STATUS_ERROR


def test_index_rows_pages_and_missing_leaderboard(tiny_notebooks, tmp_path):
    expected = tmp_path / "expected"
    expected.mkdir()
    (expected / "99_not_run_yet.ipynb").write_text("{}")
    out = tmp_path / "site"
    entries = report.build_report(tiny_notebooks, out, leaderboard=tmp_path / "missing.csv", expected=expected)
    assert [(e.name, e.status) for e in entries] == [
        ("99_not_run_yet", report.STATUS_NOT_EXECUTED), ("a_ok", report.STATUS_OK),
        ("b_error", report.STATUS_ERROR), ("c_unexecuted", report.STATUS_NOT_EXECUTED)]
    index = (out / "index.html").read_text()
    for name in ("a_ok", "b_error", "c_unexecuted"):
        assert f'href="{name}.html"' in index and (out / f"{name}.html").is_file()
    assert 'href="99_not_run_yet.html"' not in index and not (out / "99_not_run_yet.html").exists()
    assert "12 s" in index and report.STATUS_ERROR in index
    assert report.NO_LEADERBOARD in index  # never a made-up leaderboard
    error_page = (out / "b_error.html").read_text()
    assert report.ERROR_CLASS in error_page and "adlib-error-banner" in error_page
    assert report.ERROR_CLASS not in (out / "a_ok.html").read_text().replace(f"<code>{report.ERROR_CLASS}", "")
    # links between notebooks point at the rendered pages, and every page links back to the index
    ok_page = (out / "a_ok.html").read_text()
    assert 'href="b_error.html"' in ok_page and 'href="index.html"' in ok_page


def test_leaderboard_table_is_read_from_the_csv(tiny_notebooks, tmp_path):
    csv = tmp_path / "07_leaderboard.csv"
    csv.write_text("method,auroc_mean,auroc_std\nDPA,0.8123,0.01\nPatchCore,0.7,0.02\n")
    report.build_report(tiny_notebooks, tmp_path / "site", leaderboard=csv)
    index = (tmp_path / "site" / "index.html").read_text()
    assert 'class="dataframe leaderboard"' in index and "PatchCore" in index and "0.812" in index
    assert report.NO_LEADERBOARD not in index


def test_output_is_replaced_atomically(tiny_notebooks, tmp_path):
    out = tmp_path / "site"
    report.build_report(tiny_notebooks, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (tiny_notebooks / "d_broken.ipynb").write_text("{ not json")
    with pytest.raises(Exception):
        report.build_report(tiny_notebooks, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the old report, untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["executed", "site"]  # no temporary folder left
    (tiny_notebooks / "d_broken.ipynb").unlink()
    (tiny_notebooks / "a_ok.ipynb").unlink()
    report.build_report(tiny_notebooks, out)
    assert not (out / "a_ok.html").exists()  # a rebuild replaces the whole folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["executed", "site"]
    # a folder that is not a report is never replaced
    other = tmp_path / "precious"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError):
        report.build_report(tiny_notebooks, other)
    assert (other / "keep.txt").read_text() == "x" and not (other / "index.html").exists()


# ---- the committed notebooks in a real browser -------------------------------------------------------------

@pytest.fixture(scope="module")
def committed_report(tmp_path_factory):
    assert COMMITTED, "no committed notebooks"
    out = tmp_path_factory.mktemp("report") / "report"
    start = time.perf_counter()
    entries = report.build_report(ROOT / "notebooks", out, leaderboard=ROOT / "results" / report.LEADERBOARD_NAME)
    print(f"report of {len(entries)} committed notebooks built in {time.perf_counter() - start:.1f} s")
    return out, entries


def test_index_lists_every_committed_notebook(committed_report):
    out, entries = committed_report
    index = (out / "index.html").read_text()
    assert [e.name for e in entries] == [p.stem for p in COMMITTED]
    from pending_execution import PENDING_EXECUTION

    for entry in entries:
        assert f'href="{entry.page}"' in index and (out / entry.page).is_file()
        if entry.name[:2] in PENDING_EXECUTION:  # listed as not executed, not as ok
            assert entry.status != report.STATUS_OK
            continue
        assert entry.status == report.STATUS_OK and entry.duration_s is not None


class _LoggingHandler(http.server.SimpleHTTPRequestHandler):
    requests: list  # (path, status code), one list per server

    def log_request(self, code="-", size="-"):
        self.requests.append((urlparse(self.path).path, int(getattr(code, "value", code))))

    def log_message(self, format, *args):  # keep the test output quiet
        pass


@contextlib.contextmanager
def serve(directory: Path):
    """A local http.server on 127.0.0.1 in a thread; yields (base URL, request log)."""
    requests: list = []
    handler = type("Handler", (_LoggingHandler,), {"requests": requests})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", requests
    finally:
        server.shutdown()
        server.server_close()


def _browser_or_skip():
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    if missing:
        reason = (f"browser test needs {', '.join(missing)} "
                  "(apt-get install chromium chromium-driver; pip install selenium)")
        if os.environ.get("ADLIB_REQUIRE_BROWSER") == "1":
            pytest.fail(reason + "; ADLIB_REQUIRE_BROWSER=1 makes this a failure")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="adlib-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1280,1000",
                 # the pages name MathJax/require.js on a CDN; resolve nothing but the local server, at once
                 "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _artifacts_dir() -> Path:
    path = Path(os.environ.get("ADLIB_ARTIFACTS") or ROOT / "tests" / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


PAGE_CHECK = """
const imgs = Array.from(document.images);
return {
  readyState: document.readyState,
  title: document.title,
  links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
  images: imgs.length,
  brokenImages: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => (i.src || '').slice(0, 80)),
  errorCells: document.querySelectorAll('.%s, .adlib-error-banner').length,
  traceback: document.body.innerText.includes('Traceback'),
};
""" % report.ERROR_CLASS


def check_site(browser, base: str, requests: list, screenshot: Path | None = None):
    """Open the index and every local page it leads to; returns (problems, pages visited, images seen)."""
    index = base + "index.html"
    to_visit, seen, problems, images = [index], set(), [], 0
    while to_visit:
        url = to_visit.pop(0)
        if url in seen:
            continue
        seen.add(url)
        browser.get(url)
        if url == index and screenshot is not None:
            assert browser.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 0
        page = browser.execute_script(PAGE_CHECK)
        name = urlparse(url).path
        codes = [code for path, code in requests if path == name]
        if not codes or codes[-1] != 200:
            problems.append(f"{name}: broken link, the server answered {codes[-1] if codes else 'nothing'}")
            continue
        if not page["title"].strip():
            problems.append(f"{name}: no page title")
        if page["brokenImages"]:
            problems.append(f"{name}: {len(page['brokenImages'])} missing/broken image(s) {page['brokenImages'][:3]}")
        if page["errorCells"] or page["traceback"]:
            problems.append(f"{name}: error output in the page")
        images += page["images"]
        for link in page["links"]:
            target = urldefrag(link).url
            if target.startswith(base) and target not in seen:
                to_visit.append(target)
    problems += [f"{path}: the server answered {code}" for path, code in requests
                 if code >= 400 and base + path.lstrip("/") not in seen]
    return problems, {urlparse(u).path.lstrip("/") for u in seen}, images


def test_every_page_in_a_headless_browser(browser, committed_report):
    out, entries = committed_report
    start = time.perf_counter()
    shot = _artifacts_dir() / "report_index.png"
    with serve(out) as (base, requests):
        problems, visited, images = check_site(browser, base, requests, screenshot=shot)
    assert not problems, "\n".join(problems)
    assert visited == {"index.html"} | {e.page for e in entries}, "the index does not link every page"
    assert images > 0, "no figure at all in the committed notebooks' pages"
    print(f"browser check of {len(visited)} pages ({images} images) took {time.perf_counter() - start:.1f} s; "
          f"screenshot: {shot}")


def test_the_browser_check_catches_broken_links_images_and_errors(browser, tiny_notebooks, tmp_path):
    out = tmp_path / "site"
    report.build_report(tiny_notebooks, out)
    page = out / "a_ok.html"
    page.write_text(page.read_text().replace(
        "</main>", '<img src="missing.png" alt="gone"><a href="nowhere.html">dead link</a></main>'))
    with serve(out) as (base, requests):
        problems, _, _ = check_site(browser, base, requests)
    text = "\n".join(problems)
    assert "/nowhere.html: broken link" in text
    assert "/a_ok.html: 1 missing/broken image" in text
    assert "/b_error.html: error output" in text


def test_readme_leaderboard_rows_come_from_the_csv(tmp_path):
    import pandas as pd

    from adlib.report import README_END, README_START, update_readme_leaderboard

    board = tmp_path / "07_leaderboard.csv"
    pd.DataFrame({"method": ["A", "B", "C"], "block": ["unsupervised"] * 3, "n_datasets": [5, 5, 4],
                  "mean_rank": [1.5, 2.5, None], "mean_auroc": [0.71, 0.93, 0.5], "profile": ["cpu"] * 3}).to_csv(
        board, index=False)
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{README_START}\nold rows\n{README_END}\nrest\n")
    assert update_readme_leaderboard(readme, board, top=2)
    text = readme.read_text()
    assert "old rows" not in text and text.startswith("intro\n") and text.endswith("rest\n")
    rows = [line for line in text.splitlines() if line.startswith("| 1 ") or line.startswith("| 2 ")]
    # ranked methods first, by mean rank; an unranked method (C) comes after them whatever its AUROC
    assert rows == ["| 1 | A | unsupervised | 71.0 | 1.50 | 5 |", "| 2 | B | unsupervised | 93.0 | 2.50 | 5 |"]
    assert "| C |" not in text  # top=2
    readme.write_text("no markers\n")
    assert not update_readme_leaderboard(readme, board)


def test_readme_command_refuses_a_readme_without_markers(tmp_path, monkeypatch, capsys):
    from adlib import report

    monkeypatch.setattr(report, "PROJECT_ROOT", tmp_path)
    (tmp_path / "README.md").write_text("a README without the markers\n")
    assert report.main(["--readme", "--leaderboard", str(tmp_path / "missing.csv")]) == 2
    assert report.README_START in capsys.readouterr().err  # it says which lines to put back
    (tmp_path / "README.md").write_text(f"{report.README_START}\n{report.README_END}\n")
    assert report.main(["--readme", "--leaderboard", str(tmp_path / "missing.csv")]) == 2  # no wall-time markers
    assert report.WALL_START in capsys.readouterr().err
    (tmp_path / "README.md").write_text(f"{report.README_START}\n{report.README_END}\n{report.WALL_START}\n"
                                        f"{report.WALL_END}\n")
    assert report.main(["--readme", "--leaderboard", str(tmp_path / "missing.csv")]) == 0  # nothing to copy yet
    assert "run notebook 07" in capsys.readouterr().out


def test_readme_wall_times_come_from_the_notebooks_metadata(tmp_path):
    import nbformat

    from adlib import report

    for name, seconds in (("00_a", 90.4), ("01_b", 1300.0)):
        nb = nbformat.v4.new_notebook()
        nb.metadata["papermill"] = {"duration": seconds, "start_time": "2026-01-02T03:04:05+00:00"}
        nb.metadata["adlib"] = {"executed_with": {"profile": "cpu"}}
        nbformat.write(nb, tmp_path / f"{name}.ipynb")
    readme = tmp_path / "README.md"
    readme.write_text(f"top\n{report.WALL_START}\nstale\n{report.WALL_END}\nbottom\n")
    assert report.update_readme_wall_times(readme, tmp_path)
    text = readme.read_text()
    assert "stale" not in text and text.startswith("top\n") and text.endswith("bottom\n")
    assert "| 00_a | cpu | 90 s | 2026-01-02 03:04 |" in text
    assert "| 01_b | cpu | 1300 s (21.7 min) | 2026-01-02 03:04 |" in text
    assert "20-minute target: 01." in text
