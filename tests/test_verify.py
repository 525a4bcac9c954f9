"""adlib.verify: committed result tables vs a fresh run (row by row, on keys), and the staleness check.

The comparison is tested on small hand-made tables (identical, reordered, one number altered, rows missing, a
tolerance); the staleness check on a throw-away git repository; the real committed outputs' staleness is an
expected failure until they are re-executed from a clean commit; and one smoke-profile notebook executed twice
must give identical tables.
"""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from adlib import verify

ROOT = Path(__file__).resolve().parents[1]

ROWS = pd.DataFrame({
    "dataset": ["pneumonia", "pneumonia", "breast", "breast"],
    "method": ["AE", "AE", "AE", "DPA"],
    "seed": [0, 1, 0, 0],
    "AUROC": [0.61, 0.6234567890123, 0.55, 0.7],
    "status": ["completed"] * 4,
    "fit_seconds": [1.0, 2.0, 3.0, 4.0],
    "git_commit": ["abc"] * 4,
    "threads": [1, 1, 1, 1],
})


def write(folder: Path, name: str, frame: pd.DataFrame) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / name, index=False)
    return folder / name


def compare(tmp_path, committed: pd.DataFrame, fresh: pd.DataFrame, **kw):
    write(tmp_path / "committed", "00_table.csv", committed)
    write(tmp_path / "fresh", "00_table.csv", fresh)
    (result,) = verify.compare_folders(tmp_path / "committed", tmp_path / "fresh", **kw)
    return result


def test_identical_tables_pass_and_cost_and_provenance_columns_are_not_compared(tmp_path):
    fresh = ROWS.assign(fit_seconds=[9.0, 9.0, 9.0, 9.0], git_commit="def+dirty", threads=2)
    result = compare(tmp_path, ROWS, fresh)
    assert result.ok, result.describe()
    assert result.key == ["dataset", "method", "seed"]
    assert (result.rows_compared, result.rows_identical, result.max_difference) == (4, 4, 0.0)


def test_row_order_does_not_matter(tmp_path):
    result = compare(tmp_path, ROWS, ROWS.iloc[[3, 1, 0, 2]])
    assert result.ok and result.rows_identical == 4


def test_an_altered_number_fails_and_names_its_row(tmp_path):
    fresh = ROWS.copy()
    fresh.loc[1, "AUROC"] = 0.6234567890124  # 1e-13 away: exact means exact
    result = compare(tmp_path, ROWS, fresh)
    assert not result.ok
    assert result.rows_identical == 3 and result.rows_compared == 4
    assert result.max_row == "dataset=pneumonia, method=AE, seed=1" and result.max_column == "AUROC"
    assert 0 < result.max_difference < 1e-12
    assert len(result.differences) == 1 and result.differences[0].committed == "0.6234567890123"
    assert "seed=1" in result.describe() and "DIFFERS" in result.describe()
    # within a stated tolerance it passes, and the difference is still reported
    tolerant = compare(tmp_path, ROWS, fresh, tolerance=1e-9)
    assert tolerant.ok and tolerant.rows_within_tolerance == 4 and tolerant.max_difference > 0


def test_changed_text_and_missing_rows_are_reported(tmp_path):
    fresh = ROWS.drop(index=2).copy()
    fresh.loc[0, "status"] = "diverged"
    extra = pd.DataFrame([{**ROWS.iloc[0].to_dict(), "seed": 5}])
    result = compare(tmp_path, ROWS, pd.concat([fresh, extra]), tolerance=1.0)
    assert not result.ok
    assert result.missing_in_fresh == ["dataset=breast, method=AE, seed=0"]
    assert result.missing_in_committed == ["dataset=pneumonia, method=AE, seed=5"]
    assert math.isinf(result.max_difference) and result.max_column == "status"  # text: no tolerance applies
    text = result.describe()
    assert "missing in the fresh run" in text and "missing in the committed table" in text


def test_missing_table_new_table_and_missing_column(tmp_path):
    write(tmp_path / "committed", "01_a.csv", ROWS)
    write(tmp_path / "committed", "02_b.csv", ROWS)
    write(tmp_path / "fresh", "01_a.csv", ROWS.drop(columns=["status"]))
    write(tmp_path / "fresh", "01_new.csv", ROWS)
    found = {c.table: c for c in verify.compare_folders(tmp_path / "committed", tmp_path / "fresh")}
    assert found["01_a.csv"].columns_only_committed == ["status"] and not found["01_a.csv"].ok
    assert "no such table" in found["02_b.csv"].problem
    assert "new table" in found["01_new.csv"].problem
    only = verify.compare_folders(tmp_path / "committed", tmp_path / "fresh", only=["02"])
    assert [c.table for c in only] == ["02_b.csv"]


def test_empty_cells_and_summary_columns(tmp_path):
    committed = ROWS.assign(AUROC_ci_low=[float("nan")] * 4, AUROC_std=[0.1] * 4, fit_seconds_mean=[1.0] * 4)
    fresh = committed.assign(fit_seconds_mean=[5.0] * 4)
    assert compare(tmp_path, committed, fresh).ok  # NaN == NaN, cost column of a summary ignored
    fresh.loc[0, "AUROC_ci_low"] = 0.5
    assert not compare(tmp_path, committed, fresh).ok  # a number where there was none
    assert verify.is_ignored("score_images_per_s_std") and not verify.is_ignored("AUROC_mean")


def test_duplicate_keys_are_matched_in_order(tmp_path):
    twice = pd.concat([ROWS.iloc[[0]], ROWS.iloc[[0]].assign(AUROC=0.9)], ignore_index=True)
    assert compare(tmp_path, twice, twice).ok
    assert not compare(tmp_path, twice, twice.iloc[::-1]).ok  # same key: told apart by order of appearance


# Committed tables whose rows verify's key columns do not tell apart yet (the fix is in adlib/verify.py's
# KEY_COLUMNS, which comes with the next execution of every notebook); the test below proves each is still so.
KEYS_NOT_UNIQUE_YET: dict[str, str] = {}


def test_every_committed_table_has_unique_keys():
    """The key columns identify every row of every committed table (else row matching would be by order)."""
    tables = sorted((ROOT / "results").glob("**/[0-9][0-9]_*.csv"))
    assert tables
    for path in tables:
        if path.name in KEYS_NOT_UNIQUE_YET:
            continue
        frame = verify.read_table(path)
        key = [c for c in verify.KEY_COLUMNS if c in frame.columns]
        assert key, path.name
        assert not frame.duplicated(subset=key).any(), f"{path.name}: rows share a key {key}"


@pytest.mark.parametrize("name", sorted(KEYS_NOT_UNIQUE_YET))
def test_tables_exempt_from_unique_keys_still_need_it(name):
    frame = verify.read_table(ROOT / "results" / name)
    key = [c for c in verify.KEY_COLUMNS if c in frame.columns]
    assert frame.duplicated(subset=key).any(), f"{name} has unique keys now: remove it from KEYS_NOT_UNIQUE_YET"


def test_command_line_report_files_and_exit_codes(tmp_path):
    write(tmp_path / "committed", "00_table.csv", ROWS)
    fresh = ROWS.copy()
    fresh.loc[3, "AUROC"] = 0.75
    write(tmp_path / "fresh", "00_table.csv", fresh)
    stem = tmp_path / "out" / "reproduction"
    proc = subprocess.run([sys.executable, "-m", "adlib.verify", "--committed", str(tmp_path / "committed"),
                           "--fresh", str(tmp_path / "fresh"), "--report", str(stem)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "NOT REPRODUCED" in proc.stdout and "method=DPA" in proc.stdout
    summary = pd.read_csv(stem.with_name("reproduction.csv"))
    assert summary.loc[0, "status"] == "DIFFERS" and summary.loc[0, "rows_identical"] == 3
    cells = pd.read_csv(stem.with_name("reproduction_cells.csv"))
    assert cells.loc[0, "row"] == "dataset=breast, method=DPA, seed=0"
    assert "Not reproduced" in stem.with_name("reproduction.html").read_text()
    write(tmp_path / "fresh", "00_table.csv", ROWS)
    ok = subprocess.run([sys.executable, "-m", "adlib.verify", "--committed", str(tmp_path / "committed"),
                         "--fresh", str(tmp_path / "fresh")], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert ok.returncode == 0 and "REPRODUCED" in ok.stdout
    missing = subprocess.run([sys.executable, "-m", "adlib.verify", "--committed", str(tmp_path / "nothing"),
                              "--fresh", str(tmp_path / "fresh")], capture_output=True, text=True, cwd=ROOT,
                             timeout=120)
    assert missing.returncode == 1 and "no committed results folder" in missing.stderr


# ---- staleness ------------------------------------------------------------------------------------------------

def git(repo, *args):
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture()
def repo(tmp_path):
    """A tiny repository laid out like this one: code committed first, then outputs naming that commit."""
    root = tmp_path / "repo"
    (root / "adlib" / "configs").mkdir(parents=True)
    (root / "notebooks").mkdir()
    git(root, "init", "-q")
    git(root, "config", "user.email", "t@example.org")
    git(root, "config", "user.name", "test")
    (root / "adlib" / "__init__.py").write_text("VALUE = 1\n")
    (root / "adlib" / "configs" / "00_demo.toml").write_text("[cpu]\nsteps = 3\n")
    (root / "notebooks" / "00_demo.py").write_text("print('demo')\n")
    (root / "notebooks" / "01_other.py").write_text("print('other')\n")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "code")
    return root


def add_outputs(root, commit):
    write(root / "results", "00_demo.csv", ROWS.assign(git_commit=commit))
    write(root / "results", "00_demo_summary.csv", ROWS.drop(columns=["git_commit"]))
    nb = {"cells": [], "metadata": {"adlib": {"executed_with": {"profile": "cpu"}}}, "nbformat": 4,
          "nbformat_minor": 5}
    (root / "notebooks" / "00_demo.ipynb").write_text(json.dumps(nb))
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "outputs")


def test_outputs_of_a_clean_commit_pass(repo):
    add_outputs(repo, git(repo, "rev-parse", "--short=12", "HEAD"))
    assert verify.stale_outputs(repo) == []
    # a change to another notebook's source does not make notebook 00's outputs stale
    (repo / "notebooks" / "01_other.py").write_text("print('changed')\n")
    git(repo, "commit", "-qam", "other notebook")
    assert verify.stale_outputs(repo) == []


def test_dirty_commit_fails(repo):
    add_outputs(repo, git(repo, "rev-parse", "--short=12", "HEAD") + "+dirty")
    findings = verify.stale_outputs(repo)
    outputs = {f.output for f in findings}
    assert outputs == {"results/00_demo.csv", "notebooks/00_demo.ipynb"}  # the notebook: through its rows
    assert all("+dirty" in f.problem for f in findings)


@pytest.mark.parametrize("changed", ["adlib/__init__.py", "adlib/configs/00_demo.toml", "notebooks/00_demo.py"])
def test_a_later_code_change_makes_outputs_stale(repo, changed):
    add_outputs(repo, git(repo, "rev-parse", "--short=12", "HEAD"))
    (repo / changed).write_text((repo / changed).read_text() + "# changed\n")
    assert verify.stale_outputs(repo) == []  # uncommitted: HEAD's code is still the outputs' code
    git(repo, "commit", "-qam", "change")
    findings = verify.stale_outputs(repo)
    assert {f.output for f in findings} == {"results/00_demo.csv", "notebooks/00_demo.ipynb"}
    assert all("stale" in f.problem and changed in f.problem for f in findings)


def test_notebook_metadata_commit_and_unknown_commits(repo):
    add_outputs(repo, "0123456789ab")  # not a commit of this repository
    nb_path = repo / "notebooks" / "00_demo.ipynb"
    nb = json.loads(nb_path.read_text())
    nb["metadata"]["adlib"]["executed_with"]["git_commit"] = git(repo, "rev-parse", "--short=12", "HEAD")
    nb_path.write_text(json.dumps(nb))
    git(repo, "commit", "-qam", "notebook records its commit")
    findings = verify.stale_outputs(repo)
    assert [(f.output, "not in this repository" in f.problem) for f in findings] == [("results/00_demo.csv", True)]


def test_provenance_marks_uncommitted_notebook_sources_and_configs_dirty(repo):
    from adlib.provenance import git_commit

    head = git(repo, "rev-parse", "--short=12", "HEAD")
    assert git_commit(repo) == head
    for path in ("notebooks/00_demo.py", "adlib/configs/00_demo.toml"):
        original = (repo / path).read_text()
        (repo / path).write_text(original + "# edit\n")
        git_commit.cache_clear()
        assert git_commit(repo) == head + "+dirty", path
        (repo / path).write_text(original)
    (repo / "notebooks" / "00_demo.ipynb").write_text("{}")  # an output, not code
    (repo / "results").mkdir()
    (repo / "results" / "00_x.csv").write_text("a\n1\n")
    git_commit.cache_clear()
    assert git_commit(repo) == head
    (repo / "adlib" / "new_module.py").write_text("")  # new, uncommitted code
    git_commit.cache_clear()
    assert git_commit(repo) == head + "+dirty"
    git_commit.cache_clear()


def test_committed_outputs_come_from_committed_current_code():
    # The budget study's rows (results/budget/) are hours of CPU each, appended across sessions: each row keeps the
    # clean commit that produced it (reproduce a rung with `python -m adlib.budget` at that commit), so for them only
    # a +dirty, unknown or missing commit is a finding, not a later change of adlib/. The same holds for the
    # measurements under results/reproduction/ (a cross-CPU re-run, the kernel caps): records of one machine at one
    # commit, which no later session can reproduce on its own machine; and the budget rungs trained on a GPU in
    # the paper profile (results/paper/budget/: a lent GPU's minutes).
    # Notebooks pending execution (tests/pending_execution.py) and their tables are known to be stale; the test of
    # the list itself fails once one of them is fresh.
    from pending_execution import PENDING_EXECUTION

    findings = [f for f in verify.stale_outputs(ROOT)
                if not (f.output.startswith(("results/budget/", "results/paper/budget/", "results/reproduction/"))
                        and f.problem.startswith("stale: code changed"))
                and Path(f.output).name[:2] not in PENDING_EXECUTION]
    assert not findings, f"{len(findings)} stale output(s), e.g.:\n" + "\n".join(map(str, findings[:10]))


# ---- a smoke notebook executed twice gives identical tables --------------------------------------------------

SMOKE_NOTEBOOK = "00_data_and_protocols"


def test_a_smoke_notebook_run_twice_gives_identical_tables(tmp_path):
    """Two executions of the same notebook (smoke profile, one thread each, separate scratch outputs) reproduce
    every number of every table it writes. They run at the same time, as two processes (what --jobs does)."""
    pytest.importorskip("papermill")
    source = ROOT / "notebooks" / f"{SMOKE_NOTEBOOK}.ipynb"
    base_env = {k: v for k, v in os.environ.items() if k != "ADLIB_THREADS"}  # the default: one thread
    runs = {}
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        env = dict(base_env, ADLIB_PROFILE="smoke", ADLIB_RESULTS=str(tmp_path / run / "results"),
                   ADLIB_FIGURES=str(tmp_path / run / "figures"), OMP_NUM_THREADS="1")
        runs[run] = subprocess.Popen(
            [sys.executable, "-m", "papermill", str(source), str(tmp_path / run / "out.ipynb"), "-p", "profile",
             "smoke", "-k", "python3", "--cwd", str(ROOT / "notebooks"), "--no-progress-bar"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for run, proc in runs.items():
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"run {run}: {err[-3000:]}"
    first, second = tmp_path / "a" / "results" / "smoke", tmp_path / "b" / "results" / "smoke"
    comparisons = verify.compare_folders(first, second)
    assert comparisons, "the notebook wrote no table"
    assert all(c.ok for c in comparisons), "\n".join(c.describe() for c in comparisons)
    assert sum(c.rows_compared for c in comparisons) > 0


def test_notebooks_pending_execution_are_still_stale():
    """Each notebook listed as pending execution really has stale outputs (else: remove it from the list)."""
    from pending_execution import PENDING_EXECUTION

    stale = {Path(f.output).name[:2] for f in verify.stale_outputs(ROOT) if f.output.startswith("notebooks/")}
    assert PENDING_EXECUTION <= stale, f"{sorted(PENDING_EXECUTION - stale)} are fresh: remove them from the list"


def test_the_output_tools_are_imported_by_no_code_that_produces_a_result():
    """verify.OUTPUT_TOOLS are left out of the staleness check; that is only right while nothing a notebook runs
    (the rest of adlib/, the notebook sources) imports them."""
    import ast

    tools = {Path(t).stem for t in verify.OUTPUT_TOOLS}
    sources = [p for p in (ROOT / "adlib").rglob("*.py") if p.relative_to(ROOT).as_posix() not in verify.OUTPUT_TOOLS]
    sources += sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module or ''}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                assert name.split(".")[-1] not in tools, f"{path.relative_to(ROOT)} imports {name}"


def test_a_change_to_an_output_tool_does_not_make_outputs_stale():
    assert "adlib/verify.py" in verify.OUTPUT_TOOLS
    paths = verify._code_paths(ROOT, "02")
    assert "adlib" in paths and ":(exclude)adlib/verify.py" in paths and ":(glob)notebooks/02_*.py" in paths


def test_cost_columns_of_the_committed_tables_are_not_compared():
    for column in ("fit images/s", "bare step images/s", "cache seconds", "loop overhead %", "CPU h", "cpu_share",
                   "finished_at", "python"):
        assert verify.is_ignored(column), column
    assert not verify.is_ignored("AUROC") and not verify.is_ignored("test AUROC at x1 (cpu budget)")


def test_the_report_names_the_cpu_kind_of_the_committed_tables(tmp_path):
    """Exactness is promised on the same CPU kind only: the report says whether the committed tables were computed
    on this machine's kind, on another, or record none (rows older than the cpu_model column)."""
    from adlib.provenance import cpu_kind, run_provenance

    mine = cpu_kind()
    assert {"cpu_model", "cpu_isa", "torch_cpu_capability"} <= set(run_provenance())
    write(tmp_path / "none", "00_table.csv", ROWS)
    assert "do not record theirs" in verify.cpu_kind_note(tmp_path / "none")
    write(tmp_path / "same", "00_table.csv", ROWS.assign(**mine))
    assert "the same kind as this machine: exact agreement expected" in verify.cpu_kind_note(tmp_path / "same")
    write(tmp_path / "other", "00_table.csv", ROWS.assign(**{**mine, "cpu_isa": "avx2 fma"}))
    note = verify.cpu_kind_note(tmp_path / "other")
    assert "differences are expected" in note and "avx2 fma;" in note
    # the CPU columns are provenance: a fresh run on another kind is compared on its numbers only
    result = compare(tmp_path / "cmp", ROWS.assign(**mine), ROWS.assign(cpu_model="other", cpu_isa="x",
                                                                       torch_cpu_capability="DEFAULT"))
    assert result.ok, result.describe()
