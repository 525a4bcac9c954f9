"""Do the committed outputs reproduce, and do they come from committed code?

Two checks, each usable on its own:

* **Reproduction** (`compare_folders`): every committed result table against a fresh run's table of the same
  name, row by row. Rows are matched on their key columns (`KEY_COLUMNS`: dataset, method, variant, seed, image
  size, weights, K, ...; whichever a table has), not on their position, so row order does not matter. Every
  other column is compared: numbers within an absolute tolerance (0 by default: exact), text exactly.
  Provenance and cost columns are not compared (`is_ignored`: git commit, device, threads, torch version,
  machine, configuration hash, seconds, images/s, memory): they describe the run, not its result.
  ``./run_all.sh verify`` re-executes the notebooks into a scratch folder and calls this.
* **Staleness** (`stale_outputs`): every committed result row and notebook names the commit that produced it;
  the check fails when that commit is ``+dirty`` (uncommitted code), unknown, or when the code it depends on
  (adlib/ with its configs, the notebook's .py source) differs between that commit and HEAD.

Command line::

    python -m adlib.verify --committed results --fresh executed/verify/results [--only 00 02] [--tolerance 0]
                           [--report executed/verify/cpu/reproduction]
    python -m adlib.verify --stale [--repo .]

Exit code 0 when everything reproduces (or nothing is stale), 1 otherwise, 2 for a usage error.
"""
from __future__ import annotations

import argparse
import html
import json
import math
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .io import atomic_write_text
from .provenance import cpu_kind
from .paths import PROJECT_ROOT

# Columns that identify a row. A table's key is every one of these it has (checked to be unique; duplicates are
# told apart by their order of appearance within the key, see `_keyed`).
KEY_COLUMNS = (
    "paper", "table", "dataset_paper", "dataset_ours", "dataset", "data", "method", "detector", "block", "variant",
    "how", "source", "metric", "stage", "step", "unit", "group A", "group B", "config", "network", "backbone",
    "weights", "ablation", "trained_on", "data_source", "profile", "image_size", "input_size", "seed", "K",
    "retention", "grid", "latent", "layers", "loss", "loss layers", "targets", "batch_size", "timed steps",
    "bf16_autocast", "compiled", "n_anomalies", "n_types", "repeat", "head", "width_label", "width",
    "budget_multiplier",
)
# Provenance: who/where/with what, not the result.
PROVENANCE_COLUMNS = {"git_commit", "device", "threads", "torch", "python", "machine", "config_sha256", "finished_at",
                      "cpu_model", "cpu_isa", "torch_cpu_capability"}
# Cost columns (wall time, speed, memory) differ from run to run by nature.
COST_NAMES = {"seconds", "per_s", "search_s_per_image", "vs default", "load_average", "peak_memory_MB",
              "added_memory_MB", "loop overhead %", "cpu_share", "CPU h", "wall h", "GPU wall h"}
COST_SUFFIXES = ("_seconds", "_per_s", "_memory_MB", " seconds", " images/s")

NOTEBOOK_TABLE = re.compile(r"^(\d\d)_.+\.csv$")


def _base_name(column: str) -> str:
    """A summary table's ``AUROC_mean`` / ``fit_seconds_std`` -> the measured column's name."""
    while column.endswith(("_mean", "_std")):
        column = column.rsplit("_", 1)[0]
    return column


def is_ignored(column: str) -> bool:
    """True for provenance and cost columns, which are not compared (also as a summary's _mean/_std)."""
    base = _base_name(column)
    return base in PROVENANCE_COLUMNS or base in COST_NAMES or base.endswith(COST_SUFFIXES)


def _number(text: str) -> float | None:
    """The cell as a float, None when it is not a number (text); an empty cell is NaN."""
    if text == "":
        return math.nan
    try:
        return float(text)
    except ValueError:
        return None


def _difference(committed: str, fresh: str) -> float:
    """|committed - fresh| for numbers (0 for two empty cells / NaNs), 0 or inf for text."""
    if committed == fresh:
        return 0.0
    a, b = _number(committed), _number(fresh)
    if a is None or b is None:
        return math.inf
    if math.isnan(a) and math.isnan(b):
        return 0.0
    if math.isnan(a) or math.isnan(b):
        return math.inf
    if math.isinf(a) or math.isinf(b):
        return 0.0 if a == b else math.inf
    return abs(a - b)


@dataclass
class CellDifference:
    table: str
    row: str          # the row's key, "dataset=pneumonia, method=AE, seed=0"
    column: str
    committed: str
    fresh: str
    difference: float


@dataclass
class TableComparison:
    """One table's reproduction: counts, the largest difference and where it is, what is missing."""

    table: str
    key: list[str] = field(default_factory=list)
    rows_committed: int = 0
    rows_fresh: int = 0
    rows_compared: int = 0
    rows_identical: int = 0
    rows_within_tolerance: int = 0
    max_difference: float = 0.0
    max_row: str = ""
    max_column: str = ""
    missing_in_fresh: list[str] = field(default_factory=list)      # committed rows the fresh run lacks
    missing_in_committed: list[str] = field(default_factory=list)  # fresh rows the committed table lacks
    columns_only_committed: list[str] = field(default_factory=list)
    columns_only_fresh: list[str] = field(default_factory=list)
    differences: list[CellDifference] = field(default_factory=list)  # every cell beyond the tolerance
    problem: str = ""  # a whole-table problem: table missing, unreadable, no key columns
    tolerance: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.problem or self.differences or self.missing_in_fresh or self.missing_in_committed
                    or self.columns_only_committed or self.columns_only_fresh)

    def summary_row(self) -> dict:
        return {"table": self.table, "status": "ok" if self.ok else "DIFFERS",
                "rows_committed": self.rows_committed, "rows_fresh": self.rows_fresh,
                "rows_compared": self.rows_compared, "rows_identical": self.rows_identical,
                "rows_within_tolerance": self.rows_within_tolerance,
                "max_difference": self.max_difference, "max_difference_row": self.max_row,
                "max_difference_column": self.max_column, "cells_beyond_tolerance": len(self.differences),
                "rows_missing_in_fresh": len(self.missing_in_fresh),
                "rows_missing_in_committed": len(self.missing_in_committed),
                "columns_missing": "; ".join([f"only committed: {c}" for c in self.columns_only_committed]
                                             + [f"only fresh: {c}" for c in self.columns_only_fresh]),
                "problem": self.problem, "key": ", ".join(self.key), "tolerance": self.tolerance}

    def describe(self) -> str:
        """One or a few lines for the printed report."""
        head = (f"{'ok     ' if self.ok else 'DIFFERS'} {self.table}: ")
        if self.problem:
            return head + self.problem
        text = (f"{self.rows_compared} rows compared, {self.rows_identical} identical; largest difference "
                f"{_fmt(self.max_difference)}")
        if self.max_difference > 0:
            text += f" in {self.max_column} of [{self.max_row}]"
        lines = [head + text]
        if self.differences:
            lines.append(f"          {len(self.differences)} value(s) beyond the tolerance {self.tolerance:g}")
        for what, rows in (("missing in the fresh run", self.missing_in_fresh),
                           ("missing in the committed table", self.missing_in_committed)):
            if rows:
                shown = "; ".join(f"[{r}]" for r in rows[:3]) + (f"; ... ({len(rows)} in all)" if len(rows) > 3 else "")
                lines.append(f"          {len(rows)} row(s) {what}: {shown}")
        if self.columns_only_committed or self.columns_only_fresh:
            lines.append(f"          columns only in the committed table: {self.columns_only_committed or '-'}; "
                         f"only in the fresh one: {self.columns_only_fresh or '-'}")
        return "\n".join(lines)


def _fmt(x: float) -> str:
    if math.isinf(x):
        return "text/missing value differs"
    return "0 (exact)" if x == 0 else f"{x:.3g}"


def read_table(path: Path) -> pd.DataFrame:
    """A results CSV as text cells (exactly as written; empty cells stay empty)."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _keyed(frame: pd.DataFrame, key: list[str], shown: list[str]) -> dict[tuple, tuple[str, pd.Series]]:
    """{row key: (label, row)}: rows matched on every key column, labelled by the ``shown`` ones (those that
    vary); rows with the same key get '#2', '#3', ... in their order of appearance."""
    out: dict[tuple, tuple[str, pd.Series]] = {}
    seen: dict[tuple, int] = {}
    for _, row in frame.iterrows():
        values = tuple(row[c] for c in key)
        seen[values] = seen.get(values, 0) + 1
        label = ", ".join(f"{c}={row[c]}" for c in shown)
        if seen[values] > 1:
            label += f" #{seen[values]}"
        out[values + (seen[values],)] = (label, row)
    return out


def compare_tables(committed: pd.DataFrame, fresh: pd.DataFrame, name: str = "table",
                   tolerance: float = 0.0) -> TableComparison:
    """Compare two versions of one results table, rows matched on their key columns."""
    if tolerance < 0:
        raise ValueError(f"the tolerance is an absolute difference, 0 or more, not {tolerance}")
    result = TableComparison(name, tolerance=tolerance, rows_committed=len(committed), rows_fresh=len(fresh))
    result.key = [c for c in KEY_COLUMNS if c in committed.columns and c in fresh.columns]
    if not result.key:
        result.problem = (f"no key column to match rows on (known keys: {', '.join(KEY_COLUMNS[:8])}, ...); "
                          "add the table's identifying column to adlib.verify.KEY_COLUMNS")
        return result
    compared = [c for c in committed.columns if c in fresh.columns and c not in result.key and not is_ignored(c)]
    result.columns_only_committed = [c for c in committed.columns if c not in fresh.columns and not is_ignored(c)]
    result.columns_only_fresh = [c for c in fresh.columns if c not in committed.columns and not is_ignored(c)]
    # rows are labelled by the key columns that vary (profile=cpu on every row says nothing), matched on all
    both = pd.concat([committed[result.key], fresh[result.key]])
    shown = [c for c in result.key if both[c].nunique() > 1] or result.key[:1]
    old, new = _keyed(committed, result.key, shown), _keyed(fresh, result.key, shown)
    result.missing_in_fresh = [label for k, (label, _) in old.items() if k not in new]
    result.missing_in_committed = [label for k, (label, _) in new.items() if k not in old]
    for key, (key_text, old_row) in old.items():
        if key not in new:
            continue
        new_row = new[key][1]
        result.rows_compared += 1
        row_max = 0.0
        for column in compared:
            diff = _difference(old_row[column], new_row[column])
            row_max = max(row_max, diff)
            if diff > result.max_difference:
                result.max_difference, result.max_row, result.max_column = diff, key_text, column
            if diff > tolerance:
                result.differences.append(CellDifference(name, key_text, column, old_row[column], new_row[column],
                                                         diff))
        result.rows_identical += row_max == 0
        result.rows_within_tolerance += row_max <= tolerance
    return result


def notebook_number(table: str) -> str | None:
    match = NOTEBOOK_TABLE.match(table)
    return match.group(1) if match else None


def compare_folders(committed_dir: str | Path, fresh_dir: str | Path, only: list[str] | None = None,
                    tolerance: float = 0.0) -> list[TableComparison]:
    """Every ``NN_*.csv`` of ``committed_dir`` (only notebooks ``only``, e.g. ["00", "02"]) against the table of
    the same name in ``fresh_dir``. A fresh table of those notebooks that was never committed is reported too."""
    committed_dir, fresh_dir = Path(committed_dir), Path(fresh_dir)
    if not committed_dir.is_dir():
        raise FileNotFoundError(f"no committed results folder {committed_dir}")
    if not fresh_dir.is_dir():
        raise FileNotFoundError(f"no fresh results folder {fresh_dir}: did the re-execution run?")

    def tables(folder: Path) -> list[str]:
        return sorted(p.name for p in folder.glob("[0-9][0-9]_*.csv")
                      if only is None or notebook_number(p.name) in only)

    committed_tables, fresh_tables = tables(committed_dir), tables(fresh_dir)
    if not committed_tables:
        which = f" of notebook(s) {', '.join(only)}" if only else ""
        raise FileNotFoundError(f"no committed result tables{which} in {committed_dir}")
    out = []
    for name in committed_tables:
        if name not in fresh_tables:
            out.append(TableComparison(name, tolerance=tolerance, rows_committed=len(read_table(committed_dir / name)),
                                       problem="the fresh run wrote no such table (notebook failed or not run?)"))
            continue
        out.append(compare_tables(read_table(committed_dir / name), read_table(fresh_dir / name), name, tolerance))
    for name in fresh_tables:
        if name not in committed_tables:
            out.append(TableComparison(name, tolerance=tolerance, rows_fresh=len(read_table(fresh_dir / name)),
                                       problem="a new table: the fresh run wrote it, nothing is committed"))
    return out


# ---- the report --------------------------------------------------------------------------------------------

KIND_COLUMNS = ("cpu_model", "cpu_isa", "torch_cpu_capability")


def committed_cpu_kinds(committed_dir: str | Path) -> set[tuple[str, ...]]:
    """(cpu_model, cpu_isa, torch_cpu_capability) recorded in the committed tables (rows older than those columns
    record none)."""
    kinds = set()
    for path in sorted(Path(committed_dir).glob("*.csv")):
        frame = read_table(path)
        if set(KIND_COLUMNS) <= set(frame.columns):
            recorded = frame[list(KIND_COLUMNS)].astype(str)
            recorded = recorded[(recorded != "").all(axis=1) & (recorded != "nan").all(axis=1)]
            kinds |= {tuple(kind) for kind in recorded.drop_duplicates().itertuples(index=False)}
    return kinds


def cpu_kind_note(committed_dir: str | Path) -> str:
    """One line: on which CPU kind(s) the committed numbers were computed, and whether this one is the same."""
    mine = cpu_kind()
    here = f"{mine['cpu_model']} ({mine['cpu_isa']}; torch {mine['torch_cpu_capability']})"
    kinds = committed_cpu_kinds(committed_dir)
    if not kinds:
        return (f"CPU kind: this machine is {here}; the committed tables do not record theirs (produced before the "
                f"cpu_model column), so exact agreement is promised only if it was the same kind")
    listed = "; ".join(f"{model} ({isa}; torch {capability})" for model, isa, capability in sorted(kinds))
    if kinds == {tuple(mine[c] for c in KIND_COLUMNS)}:
        return f"CPU kind: the committed tables were computed on {listed}, the same kind as this machine: exact agreement expected"
    return (f"CPU kind: the committed tables were computed on {listed}; this machine is {here}: another kind picks "
            f"other kernels, so differences are expected (README, 'What a re-run reproduces')")


def print_report(comparisons: list[TableComparison], committed_dir, fresh_dir, file=None) -> None:
    file = file or sys.stdout
    print(f"Reproduction report: committed {committed_dir} vs fresh {fresh_dir}", file=file)
    print(cpu_kind_note(committed_dir), file=file)
    for comparison in comparisons:
        print(comparison.describe(), file=file)
    failed = [c for c in comparisons if not c.ok]
    rows = sum(c.rows_compared for c in comparisons)
    identical = sum(c.rows_identical for c in comparisons)
    worst = max(comparisons, key=lambda c: c.max_difference, default=None)
    print(f"{len(comparisons)} tables, {rows} rows compared, {identical} identical; largest difference "
          f"{_fmt(worst.max_difference) if worst else '-'}"
          + (f" ({worst.table}, {worst.max_column} of [{worst.max_row}])" if worst and worst.max_difference else ""),
          file=file)
    print("REPRODUCED: every compared number is within the tolerance" if not failed else
          f"NOT REPRODUCED: {len(failed)} table(s) differ: {', '.join(c.table for c in failed)}", file=file)


def write_report(comparisons: list[TableComparison], stem: str | Path, committed_dir, fresh_dir) -> list[Path]:
    """``stem``.csv (one row per table), ``stem``_cells.csv (every value beyond the tolerance, every missing
    row) and ``stem``.html (both, as a small page); written atomically. Returns the paths."""
    stem = Path(stem)
    summary = pd.DataFrame([c.summary_row() for c in comparisons])
    cells = [vars(d) for c in comparisons for d in c.differences]
    cells += [{"table": c.table, "row": r, "column": "(whole row)", "committed": "present", "fresh": "missing",
               "difference": math.inf} for c in comparisons for r in c.missing_in_fresh]
    cells += [{"table": c.table, "row": r, "column": "(whole row)", "committed": "missing", "fresh": "present",
               "difference": math.inf} for c in comparisons for r in c.missing_in_committed]
    cells_frame = pd.DataFrame(cells, columns=["table", "row", "column", "committed", "fresh", "difference"])
    paths = [stem.with_name(stem.name + ".csv"), stem.with_name(stem.name + "_cells.csv"),
             stem.with_name(stem.name + ".html")]
    atomic_write_text(paths[0], summary.to_csv(index=False))
    atomic_write_text(paths[1], cells_frame.to_csv(index=False))
    atomic_write_text(paths[2], _html(comparisons, summary, cells_frame, committed_dir, fresh_dir))
    return paths


def _html(comparisons, summary: pd.DataFrame, cells: pd.DataFrame, committed_dir, fresh_dir) -> str:
    failed = [c for c in comparisons if not c.ok]
    verdict = ("Reproduced: every compared number is within the tolerance." if not failed else
               f"Not reproduced: {len(failed)} of {len(comparisons)} tables differ.")
    esc = html.escape
    shown = cells.head(500)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>adlib reproduction report</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 6px;text-align:left}} .ok{{color:#060}} .bad{{color:#a00;font-weight:bold}}</style>
</head><body>
<h1>Reproduction report</h1>
<p>Committed tables: <code>{esc(str(committed_dir))}</code><br>Fresh run: <code>{esc(str(fresh_dir))}</code></p>
<p class="{'ok' if not failed else 'bad'}">{esc(verdict)}</p>
<p>{esc(cpu_kind_note(committed_dir))}</p>
<p>Rows are matched on their key columns; provenance and cost columns (git commit, device, threads, seconds,
images/s, memory) are not compared. Tolerance: absolute difference per value.</p>
<h2>Per table</h2>
{summary.to_html(index=False, escape=True, na_rep="")}
<h2>Values beyond the tolerance and missing rows ({len(cells)}{', first 500 shown' if len(cells) > 500 else ''})</h2>
{shown.to_html(index=False, escape=True, na_rep="") if len(shown) else "<p>none</p>"}
</body></html>
"""


# ---- staleness: outputs from committed code ------------------------------------------------------------------

@dataclass
class StaleFinding:
    output: str   # the results table or notebook, relative to the repository
    commit: str   # the commit it records
    problem: str

    def __str__(self) -> str:
        return f"{self.output}: {self.commit or '(none)'}: {self.problem}"


def _git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=60, check=check)


# Tools that read the committed outputs after the notebooks ran and that no result-producing code imports
# (tests/test_verify.py checks that): a change to them cannot change an output, so it does not make one stale.
OUTPUT_TOOLS = ("adlib/verify.py", "adlib/report.py")


def _code_paths(repo: Path, number: str | None) -> list[str]:
    """What an output of notebook ``number`` depends on: adlib/ (configs included, the output tools excepted) and
    the notebook's source."""
    paths = ["adlib", *(f":(exclude){tool}" for tool in OUTPUT_TOOLS)]
    if number is not None:
        paths.append(f":(glob)notebooks/{number}_*.py")
    return paths


def _check_commit(repo: Path, output: str, commit: str, number: str | None) -> list[StaleFinding]:
    if not commit or commit == "unknown":
        return [StaleFinding(output, commit, "no commit recorded (run from a git checkout)")]
    findings = []
    base = commit.removesuffix("+dirty")
    if commit.endswith("+dirty"):
        findings.append(StaleFinding(output, commit, "produced from uncommitted code (+dirty)"))
    if _git(repo, "cat-file", "-e", f"{base}^{{commit}}", check=False).returncode != 0:
        findings.append(StaleFinding(output, commit, f"commit {base} is not in this repository"))
        return findings
    changed = _git(repo, "diff", "--name-only", base, "HEAD", "--", *_code_paths(repo, number)).stdout.split()
    if changed:
        shown = ", ".join(changed[:4]) + (f", ... ({len(changed)} files)" if len(changed) > 4 else "")
        findings.append(StaleFinding(output, commit, f"stale: code changed between {base} and HEAD: {shown}"))
    return findings


def _tracked(repo: Path, pattern: str) -> list[str]:
    """Committed (tracked) files matching a git pathspec (``*`` also matches ``/``)."""
    return sorted(_git(repo, "ls-files", "--", pattern).stdout.splitlines())


def notebook_commits(repo: Path, notebook: str) -> list[str]:
    """The commit(s) a committed notebook was executed at: ``metadata.adlib.executed_with.git_commit`` when
    recorded, else the ``git_commit`` of the result rows its tables hold (results/NN_*.csv, written by the same
    run)."""
    meta = json.loads((repo / notebook).read_text()).get("metadata", {})
    recorded = meta.get("adlib", {}).get("executed_with", {}).get("git_commit")
    if recorded:
        return [recorded]
    number = Path(notebook).name[:2]
    commits: set[str] = set()
    for table in _tracked(repo, f"results/{number}_*.csv"):
        commits.update(_table_commits(repo / table))
    return sorted(commits)


def _table_commits(path: Path) -> set[str]:
    frame = read_table(path)
    if "git_commit" not in frame.columns:
        return set()
    return {c for c in frame["git_commit"] if c}


def stale_outputs(repo: str | Path = PROJECT_ROOT) -> list[StaleFinding]:
    """Every committed result table (results/**/NN_*.csv) and notebook (notebooks/NN_*.ipynb) whose recorded
    commit is +dirty, unknown, or older than a change to adlib/ or the notebook's source. Tables without a
    git_commit column (the _summary tables, derived from a row table) are covered by their row table."""
    repo = Path(repo)
    findings: list[StaleFinding] = []
    for table in _tracked(repo, "results/*.csv"):  # results/ and results/<profile>/
        number = notebook_number(Path(table).name)
        frame = read_table(repo / table)
        if "git_commit" not in frame.columns:
            continue
        commits = sorted({c for c in frame["git_commit"] if c})
        if not commits:
            findings.append(StaleFinding(table, "", "no row records its commit"))
        for commit in commits:
            findings += _check_commit(repo, table, commit, number)
    for notebook in _tracked(repo, "notebooks/[0-9][0-9]_*.ipynb"):
        commits = notebook_commits(repo, notebook)
        if not commits:
            findings.append(StaleFinding(notebook, "", "no commit recorded (metadata.adlib.executed_with.git_commit "
                                                       "or the git_commit of its result rows)"))
        for commit in commits:
            findings += _check_commit(repo, notebook, commit, Path(notebook).name[:2])
    return findings


# ---- command line ----------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m adlib.verify",
        description="Compare committed result tables with a fresh run (--committed/--fresh), or check that the "
                    "committed outputs come from committed, current code (--stale).")
    parser.add_argument("--committed", type=Path, help="folder of the committed tables (results/ or results/P/)")
    parser.add_argument("--fresh", type=Path, help="folder of the fresh run's tables")
    parser.add_argument("--only", nargs="+", metavar="NN", help="only the tables of these notebooks (00 02 ...)")
    parser.add_argument("--tolerance", type=float, default=0.0,
                        help="largest absolute difference allowed per value (default 0: exact)")
    parser.add_argument("--report", type=Path, metavar="STEM",
                        help="also write STEM.csv, STEM_cells.csv and STEM.html")
    parser.add_argument("--stale", action="store_true", help="the staleness check of the committed outputs")
    parser.add_argument("--repo", type=Path, default=PROJECT_ROOT, help="the repository (for --stale)")
    args = parser.parse_args(argv)

    if args.stale:
        findings = stale_outputs(args.repo)
        for finding in findings:
            print(finding)
        print(f"{len(findings)} finding(s): " + ("the committed outputs are stale or from uncommitted code"
                                                  if findings else "every committed output comes from current, committed code"))
        return 1 if findings else 0
    if args.committed is None or args.fresh is None:
        parser.error("give --committed DIR and --fresh DIR (or --stale)")
    if args.tolerance < 0:
        parser.error(f"--tolerance must be 0 or more, not {args.tolerance}")
    if args.only and not all(re.fullmatch(r"\d\d", n) for n in args.only):
        parser.error(f"--only takes two-digit notebook numbers, not {' '.join(args.only)}")
    try:
        comparisons = compare_folders(args.committed, args.fresh, args.only, args.tolerance)
    except FileNotFoundError as err:
        print(f"adlib.verify: {err}", file=sys.stderr)
        return 1
    print_report(comparisons, args.committed, args.fresh)
    if args.report:
        paths = write_report(comparisons, args.report, args.committed, args.fresh)
        print("report: " + ", ".join(str(p) for p in paths))
    return 0 if all(c.ok for c in comparisons) else 1


if __name__ == "__main__":
    sys.exit(main())
