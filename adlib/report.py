"""A static HTML site of the executed notebooks: an index page plus one self-contained page per notebook.

    python -m adlib.report [--executed DIR] [--out report/] [--leaderboard CSV] [--expected DIR] [--profile P]

The index lists every notebook with a link to its page, its wall time (papermill's own measurement,
``metadata.papermill.duration``) and its status (executed ok / error output present / not executed), followed by
the benchmark leaderboard read from ``results/07_leaderboard.csv`` when notebook 07 has written it. Pages are
rendered with nbconvert's HTMLExporter (JupyterLab look); figures are already data URIs in the notebooks and
images referenced from markdown are embedded too, so each page stands alone.

By default the notebooks come from ``executed/<profile>/`` (written by ``./run_all.sh``), falling back to the
committed notebooks in ``notebooks/`` (executed in the cpu profile). The site is built in a temporary folder
next to the target and moved into place at the end, so a failed build never leaves a half-written report.
"""
from __future__ import annotations

import argparse
import copy
import datetime as _dt
import html
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

from .io import atomic_write_text
from .paths import PROJECT_ROOT, relative_to_project, results_dir_of

STATUS_OK = "executed ok"
STATUS_ERROR = "error output present"
STATUS_NOT_EXECUTED = "not executed"
# Cells with an error output get this tag; nbconvert's lab template turns a tag into the CSS class
# "celltag_<tag>", so an error is findable in the page (stderr text and tracebacks otherwise look alike).
ERROR_TAG = "adlib-error-output"
ERROR_CLASS = "celltag_" + ERROR_TAG
MARKER = ".adlib-report"  # present in every built report; only such a folder (or an empty one) is replaced
LEADERBOARD_NAME = "07_leaderboard.csv"
NO_FAVICON = '<link rel="icon" href="data:,">'  # no request for a favicon.ico the site does not have
NO_LEADERBOARD = "leaderboard: run notebook 07"


@dataclass
class Entry:
    """One row of the index."""

    name: str  # file stem, e.g. 02_dpa_perceptual_autoencoder
    title: str
    status: str
    duration_s: float | None = None
    profile: str | None = None
    errors: int = 0
    page: str | None = None  # file name of the rendered page; None when there is none


# ---- reading notebooks ------------------------------------------------------------------------------------

def list_notebooks(directory: str | os.PathLike) -> list[Path]:
    """The notebooks of a folder in name order (numbered ones sort in teaching order)."""
    return sorted(p for p in Path(directory).glob("*.ipynb") if not p.name.startswith("."))


def error_outputs(nb: nbformat.NotebookNode) -> int:
    return sum(1 for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error")


def notebook_status(nb: nbformat.NotebookNode) -> str:
    """executed ok / error output present / not executed (no code cell ran)."""
    exception = nb.metadata.get("papermill", {}).get("exception")
    if error_outputs(nb) or exception:
        return STATUS_ERROR
    code = [c for c in nb.cells if c.cell_type == "code"]
    ran = any(c.get("execution_count") is not None or c.get("outputs") for c in code)
    if code and not ran:
        return STATUS_NOT_EXECUTED
    return STATUS_OK


def wall_time(nb: nbformat.NotebookNode) -> float | None:
    duration = nb.metadata.get("papermill", {}).get("duration")
    return float(duration) if isinstance(duration, (int, float)) else None


def executed_profile(nb: nbformat.NotebookNode) -> str | None:
    """The profile a notebook ran with: papermill's parameters, or what adlib.publish recorded."""
    for params in (nb.metadata.get("papermill", {}).get("parameters", {}),
                   nb.metadata.get("adlib", {}).get("executed_with", {})):
        if params.get("profile"):
            return str(params["profile"])
    return None


def notebook_title(nb: nbformat.NotebookNode, fallback: str) -> str:
    """The first markdown heading, without '#' and markup, else ``fallback``."""
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        for line in cell.source.splitlines():
            if line.lstrip().startswith("#"):
                text = re.sub(r"[*_`]", "", line.strip().lstrip("#")).strip()
                if text:
                    return text
    return fallback


# ---- rendering --------------------------------------------------------------------------------------------

def _exporter():
    from nbconvert import HTMLExporter

    return HTMLExporter(template_name="lab", embed_images=True)


def _page_header(entry: Entry) -> str:
    parts = [f'<a href="index.html">&larr; all notebooks</a>',
             f"<b>{html.escape(entry.name)}</b>",
             f"status: <span class=\"adlib-status\">{html.escape(entry.status)}</span>"]
    if entry.duration_s is not None:
        parts.append(f"wall time {entry.duration_s:.0f} s")
    if entry.profile:
        parts.append(f"profile {html.escape(entry.profile)}")
    header = ('<nav class="adlib-nav" style="font-family: sans-serif; padding: 0.6em 1em; '
              'border-bottom: 1px solid #ccc; background: #f6f6f6;">' + " &middot; ".join(parts) + "</nav>\n")
    if entry.errors:
        header += ('<div class="adlib-error-banner" style="font-family: sans-serif; padding: 0.6em 1em; '
                   f'background: #fdd; color: #900;">This notebook has {entry.errors} error output(s); '
                   f'the cells are marked with the class <code>{ERROR_CLASS}</code>.</div>\n')
    return header


def render_page(nb: nbformat.NotebookNode, entry: Entry, pages: dict[str, str], exporter=None,
                folder: str | os.PathLike | None = None) -> str:
    """One notebook as a self-contained HTML page with a link back to the index.

    ``pages`` maps notebook file names (``NN_name.ipynb``) to page names, so that links between notebooks
    point at the rendered pages; ``folder`` is where the notebook lives (images in markdown are relative to it).
    """
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            tags = list(cell.metadata.get("tags", []))
            cell.metadata["tags"] = tags + [ERROR_TAG]
    exporter = exporter or _exporter()
    metadata = {"name": entry.title, "path": str(folder) if folder is not None else ""}
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": metadata})

    def relink(match: re.Match) -> str:
        target, anchor = match.group(2), match.group(3) or ""
        page = pages.get(Path(target).name)
        return f'{match.group(1)}"{page}{anchor}"' if page else match.group(0)

    body = re.sub(r'(href=)"((?!https?:|#)[^"#]+\.ipynb)(#[^"]*)?"', relink, body)
    body = re.sub(r"(<head[^>]*>)", lambda m: m.group(1) + "\n" + NO_FAVICON, body, count=1)
    return re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + "\n" + _page_header(entry), body, count=1)


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "&ndash;"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds:.0f} s ({seconds / 60:.1f} min)"


def leaderboard_html(path: Path | None) -> str:
    """The leaderboard table, or the sentence saying how to get one; never made up."""
    if path is None or not Path(path).is_file():
        return f'<p class="adlib-no-leaderboard">{NO_LEADERBOARD}</p>'
    import pandas as pd

    try:
        table = pd.read_csv(path)
    except Exception as exc:  # an empty or malformed file: say so instead of failing the whole report
        return (f'<p class="adlib-no-leaderboard">{NO_LEADERBOARD} (could not read '
                f"{html.escape(relative_to_project(path))}: {html.escape(str(exc))})</p>")
    rendered = table.to_html(index=False, border=0, classes="leaderboard", na_rep="",
                             float_format=lambda v: f"{v:.3f}")
    return (f"<p>From <code>{html.escape(relative_to_project(path))}</code> ({len(table)} rows).</p>\n"
            + rendered)


INDEX_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 70em;
       padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border-bottom: 1px solid #ddd; padding: 0.35em 0.8em; text-align: left; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.status-ok, td.status-error, td.status-not-executed { white-space: nowrap; }
.status-ok { color: #176d2c; } .status-error { color: #b00; font-weight: bold; } .status-not-executed { color: #777; }
table.leaderboard td { font-variant-numeric: tabular-nums; }
.meta { color: #555; }
"""


def index_html(entries: list[Entry], source: Path, leaderboard: Path | None, built: str) -> str:
    status_class = {STATUS_OK: "status-ok", STATUS_ERROR: "status-error", STATUS_NOT_EXECUTED: "status-not-executed"}
    rows = []
    for e in entries:
        link = (f'<a href="{html.escape(e.page)}">{html.escape(e.name)}</a>' if e.page else html.escape(e.name))
        status = e.status + (f" ({e.errors})" if e.errors else "")
        rows.append(f'<tr><td>{link}</td><td>{html.escape(e.title)}</td>'
                    f'<td class="num">{_fmt_duration(e.duration_s)}</td>'
                    f'<td class="{status_class[e.status]}">{html.escape(status)}</td>'
                    f'<td>{html.escape(e.profile or "")}</td></tr>')
    total = sum(e.duration_s for e in entries if e.duration_s is not None)
    profiles = sorted({e.profile for e in entries if e.profile})
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
{NO_FAVICON}
<title>adlib report{' (' + html.escape(', '.join(profiles)) + ' profile)' if profiles else ''}</title>
<style>{INDEX_CSS}</style>
</head>
<body>
<h1>adlib: executed notebooks</h1>
<p class="meta">Notebooks from <code>{html.escape(relative_to_project(source))}</code>;
profile: {html.escape(', '.join(profiles) or 'unknown')}; built {html.escape(built)}.
Wall times are papermill's own measurement of each run.</p>
<table class="notebooks">
<thead><tr><th>notebook</th><th>title</th><th>wall time</th><th>status</th><th>profile</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody>
<tfoot><tr><td></td><td>total</td><td class="num">{_fmt_duration(total)}</td><td></td><td></td></tr></tfoot>
</table>
<h2>Leaderboard</h2>
{leaderboard_html(leaderboard)}
</body>
</html>
"""


# ---- building the site ------------------------------------------------------------------------------------

def _replace_dir(tmp: Path, out: Path) -> None:
    """Move the finished ``tmp`` to ``out``; an older report there is swapped out, then removed."""
    if out.exists():
        if not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).exists()):
            raise FileExistsError(f"{out} exists and is not a report built by adlib.report; not replacing it")
        old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
        os.rename(out, old / out.name)
        try:
            os.rename(tmp, out)
        except BaseException:
            os.rename(old / out.name, out)  # put the previous report back
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, out)


def build_report(executed: str | os.PathLike, out: str | os.PathLike, leaderboard: str | os.PathLike | None = None,
                 expected: str | os.PathLike | None = None) -> list[Entry]:
    """Render every notebook of ``executed`` into ``out`` (index.html + one page each); returns the index rows.

    ``expected``: a folder of notebooks that should have been executed; those missing from ``executed`` are
    listed as not executed, without a page.
    """
    executed, out = Path(executed).resolve(), Path(out).resolve()
    notebooks = list_notebooks(executed)
    if not notebooks:
        raise FileNotFoundError(f"no notebooks (*.ipynb) in {executed}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes a private folder; a report is for reading
        pages = {p.name: p.stem + ".html" for p in notebooks}
        exporter = _exporter()
        entries = []
        for path in notebooks:
            nb = nbformat.read(path, as_version=4)
            entry = Entry(name=path.stem, title=notebook_title(nb, path.stem), status=notebook_status(nb),
                          duration_s=wall_time(nb), profile=executed_profile(nb), errors=error_outputs(nb),
                          page=pages[path.name])
            (tmp / entry.page).write_text(render_page(nb, entry, pages, exporter, path.parent), encoding="utf-8")
            entries.append(entry)
        if expected is not None:
            present = {p.name for p in notebooks}
            for path in sorted(Path(expected).glob("[0-9][0-9]_*.ipynb")):
                if path.name not in present:
                    entries.append(Entry(name=path.stem, title=path.stem, status=STATUS_NOT_EXECUTED))
            entries.sort(key=lambda e: e.name)
        built = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        leaderboard = Path(leaderboard) if leaderboard is not None else None
        (tmp / "index.html").write_text(index_html(entries, executed, leaderboard, built), encoding="utf-8")
        (tmp / MARKER).write_text("built by python -m adlib.report; this folder is replaced on every build\n")
        _replace_dir(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return entries


README_START = "<!-- leaderboard:start - generated by `python -m adlib.report --readme` from results/07_leaderboard.csv -->"
README_END = "<!-- leaderboard:end -->"
WALL_START = "<!-- wall-times:start - generated by `python -m adlib.report --readme` from the committed notebooks -->"
WALL_END = "<!-- wall-times:end -->"
CPU_TARGET_S = 20 * 60  # the cpu profile's per-notebook budget on a 2-core machine


def readme_leaderboard_block(leaderboard: Path, top: int = 5) -> str:
    """The top ``top`` rows of the leaderboard CSV as a Markdown table (mean test AUROC, mean rank, datasets)."""
    import pandas as pd

    frame = pd.read_csv(leaderboard)
    # methods in the rank test first (by mean rank: comparable, same datasets), then the rest by mean AUROC
    frame = frame.assign(_ranked=frame["mean_rank"].notna()).sort_values(
        ["_ranked", "mean_rank", "mean_auroc"], ascending=[False, True, False]).head(top)
    marked = {"below_chance", "degenerate_threshold", "fit_seconds"} <= set(frame.columns)  # since issue 23
    lines = ["| # | method | block | mean test AUROC | mean rank | datasets |" + (" marks | fit s / run |" if marked
                                                                               else ""),
             "|---|---|---|---|---|---|" + ("---|---|" if marked else "")]
    for i, (_, r) in enumerate(frame.iterrows(), start=1):
        rank = "" if pd.isna(r.get("mean_rank")) else f"{r['mean_rank']:.2f}"
        extra = ""
        if marked:
            marks = [f"below chance on {int(r['below_chance'])}" if r["below_chance"] else "",
                     f"at chance on {int(r['at_chance'])}" if r.get("at_chance", 0) else "",
                     f"degenerate threshold on {int(r['degenerate_threshold'])}" if r["degenerate_threshold"] else ""]
            fit = "" if pd.isna(r["fit_seconds"]) else f"{r['fit_seconds']:.1f}"
            extra = f" {'; '.join(m for m in marks if m) or '-'} | {fit} |"
        lines.append(f"| {i} | {r['method']} | {r['block']} | {100 * r['mean_auroc']:.1f} | {rank} | "
                     f"{int(r['n_datasets'])} |" + extra)
    profile = frame["profile"].iloc[0] if "profile" in frame and len(frame) else "?"
    lines.append("")
    lines.append(f"Top {len(frame)} of the {profile}-profile leaderboard (`{relative_to_project(leaderboard)}`): the "
                 "methods of the Friedman/Nemenyi rank test first, by mean rank over the datasets they all ran on; "
                 "mean AUROC is over each method's own datasets." + (" Marks count the datasets on which a "
                 "method's test AUROC is below or at chance or its validation threshold is degenerate; fit s is the "
                 "mean training time of one run of notebook 07 (one CPU thread)." if marked else "")
                 + " The full table (with 95 % CIs per cell), the weakly supervised block, the critical-difference "
                 "diagram and the test's p-value are in notebook 07 and the report.")
    return "\n".join(lines)


def readme_wall_time_block(notebooks: Path) -> str:
    """A Markdown table of the committed notebooks: profile, papermill's wall time, when it ran, at which commit."""
    lines = ["| notebook | profile | wall time | executed (UTC) | at commit |", "|---|---|---|---|---|"]
    over = []
    for path in list_notebooks(notebooks):
        nb = nbformat.read(path, as_version=4)
        seconds = wall_time(nb)
        started = str(nb.metadata.get("papermill", {}).get("start_time") or "")[:16].replace("T", " ")
        commit = nb.metadata.get("adlib", {}).get("executed_with", {}).get("git_commit") or "not recorded"
        lines.append(f"| {path.stem} | {executed_profile(nb) or '?'} | {_fmt_duration(seconds)} | {started} | "
                     f"`{commit}` |")
        if seconds is not None and seconds > CPU_TARGET_S:
            over.append(path.stem[:2])
    lines.append("")
    lines.append(("Over the cpu profile's 20-minute target: " + ", ".join(over) + "." if over else
                  "Every notebook is within the cpu profile's 20-minute target.")
                 + " Threads and per-run throughput are in each notebook's timing table.")
    return "\n".join(lines)


def _replace_block(text: str, start: str, end: str, body: str) -> str | None:
    """``text`` with what lies between the ``start`` and ``end`` lines replaced by ``body``; None without them."""
    if start not in text or end not in text:
        return None
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return head + start + "\n" + body + "\n" + end + tail


def update_readme_leaderboard(readme: Path, leaderboard: Path, top: int = 5) -> bool:
    """Replace the text between README_START and README_END in ``readme`` (atomically); False if the markers
    are missing or the leaderboard does not exist."""
    text = _replace_block(readme.read_text(), README_START, README_END, readme_leaderboard_block(leaderboard, top)) \
        if leaderboard.exists() else None
    if text is None:
        return False
    atomic_write_text(readme, text)
    return True


def update_readme_wall_times(readme: Path, notebooks: Path) -> bool:
    """Replace the text between WALL_START and WALL_END with the committed notebooks' wall times."""
    text = _replace_block(readme.read_text(), WALL_START, WALL_END, readme_wall_time_block(notebooks))
    if text is None:
        return False
    atomic_write_text(readme, text)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default=None,
                        help="profile whose executed notebooks to render (default: $ADLIB_PROFILE, else cpu)")
    parser.add_argument("--executed", type=Path, default=None,
                        help="folder of executed notebooks (default: executed/<profile>/, else notebooks/)")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "report", help="output folder (default: report/)")
    parser.add_argument("--leaderboard", type=Path, default=None,
                        help=f"leaderboard CSV (default: the profile's results folder/{LEADERBOARD_NAME})")
    parser.add_argument("--expected", type=Path, default=None,
                        help="folder of the notebooks that should be there; missing ones are listed as not executed")
    parser.add_argument("--readme", action="store_true",
                        help="only update README.md's generated tables (leaderboard rows from the cpu results, "
                             "wall times of the committed notebooks), then exit")
    args = parser.parse_args(argv)
    if args.readme:
        board = args.leaderboard or results_dir_of("cpu") / LEADERBOARD_NAME
        readme = PROJECT_ROOT / "README.md"
        for what, start, end in (("leaderboard", README_START, README_END), ("wall-time", WALL_START, WALL_END)):
            if start not in readme.read_text() or end not in readme.read_text():
                print(f"[adlib] README.md lacks the {what} markers; put these two lines where the {what} table "
                      f"goes, then re-run:\n{start}\n{end}", file=sys.stderr)
                return 2
        update_readme_wall_times(readme, PROJECT_ROOT / "notebooks")
        print("[adlib] README wall times updated from the committed notebooks")
        if not board.exists():
            print(f"[adlib] README leaderboard unchanged: {relative_to_project(board)} does not exist yet "
                  "(run notebook 07: ./run_all.sh --only 07 --publish)")
            return 0
        update_readme_leaderboard(readme, board)
        print(f"[adlib] README leaderboard updated from {relative_to_project(board)}")
        return 0
    profile = args.profile or os.environ.get("ADLIB_PROFILE") or "cpu"
    executed, expected = args.executed, args.expected
    if executed is None:
        executed = PROJECT_ROOT / "executed" / profile
        if not list_notebooks(executed):
            print(f"[adlib] no executed notebooks in {relative_to_project(executed)}; "
                  "rendering the committed ones in notebooks/ (cpu profile)")
            executed, profile = PROJECT_ROOT / "notebooks", "cpu"
        expected = expected or PROJECT_ROOT / "notebooks"
    leaderboard = args.leaderboard or results_dir_of(profile) / LEADERBOARD_NAME
    start = time.perf_counter()
    try:
        entries = build_report(executed, args.out, leaderboard, expected)
    except (FileNotFoundError, FileExistsError) as exc:
        parser.exit(1, f"adlib.report: {exc}\n")
    seconds = time.perf_counter() - start
    counts = {s: sum(e.status == s for e in entries) for s in (STATUS_OK, STATUS_ERROR, STATUS_NOT_EXECUTED)}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    print(f"[adlib] report: {len(entries)} notebooks ({summary}) -> {args.out.resolve() / 'index.html'}; "
          f"built in {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
