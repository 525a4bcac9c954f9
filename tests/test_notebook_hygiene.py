"""What a student sees in a committed notebook: no stderr output, no log line repeated over and over, no code cell
longer than a screen; and the library pieces that keep it so (progress bars off in headless runs, a backbone's
weights announced once)."""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
MAX_CELL_LINES = 25  # a code cell longer than this belongs in adlib
MAX_REPEATS = 3  # the same output line more often than this is log spam


def hygiene_problems(nb: dict, max_lines: int = MAX_CELL_LINES, max_repeats: int = MAX_REPEATS) -> list[str]:
    """Every problem of one notebook (as nbformat JSON): stderr outputs, repeated output lines, long code cells."""
    problems = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"]).strip().splitlines()
        if len(source) > max_lines:
            problems.append(f"cell {i}: {len(source)} lines of code (at most {max_lines}: move it into adlib)")
        lines = Counter()
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                problems.append(f"cell {i}: stderr output {''.join(out['text'])[:80]!r}")
            if out.get("output_type") == "stream":
                lines.update(line for line in "".join(out["text"]).splitlines() if line.strip())
        problems += [f"cell {i}: {n} x {line[:80]!r}" for line, n in lines.items() if n > max_repeats]
    return problems


EXERCISE = re.compile(r"^\*\*(\d+)\.", re.MULTILINE)  # "**1. The loss layer.**" or "**1.**" at a line start


def _is_collapsed_solution(cell: dict) -> bool:
    meta = cell.get("metadata", {})
    return "solution" in meta.get("tags", []) and bool(meta.get("jupyter", {}).get("source_hidden"))


def exercise_problems(nb: dict) -> list[str]:
    """The rules of an "## Exercises" section: every code cell in it is a solution, tagged "solution" and
    collapsed (jupyter.source_hidden), and each exercise ("**N." at a line start) gets its own solution cell
    before the next exercise is stated (no shared solution, no exercise left without one)."""
    problems, in_section, pending = [], False, []

    def unsolved(where: str) -> None:
        if pending:
            problems.append(f"exercise {', '.join(pending)} has no solution cell {where}")
            pending.clear()

    for i, cell in enumerate(nb["cells"]):
        source = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            if source.startswith("## "):
                unsolved("before the section ends")
                in_section = source.startswith("## Exercises")
            found = EXERCISE.findall(source) if in_section else []
            if found:
                unsolved(f"before exercise {found[0]} (cell {i})")
            pending += found
        elif in_section:
            if not _is_collapsed_solution(cell):
                problems.append(f"cell {i}: a solution cell must be tagged 'solution' and collapsed "
                                "(metadata jupyter.source_hidden)")
            if len(pending) > 1:
                problems.append(f"cell {i}: exercises {' and '.join(pending)} share one solution cell (give each its own)")
            elif not pending:
                problems.append(f"cell {i}: a code cell in the exercises with no exercise of its own above it")
            pending.clear()
    unsolved("at the end of the notebook")
    return problems


def _notebook(cells):
    return {"cells": [{"cell_type": "code", "source": src, "outputs": outs} for src, outs in cells]}


def test_the_checker_finds_stderr_spam_and_long_cells():
    short, long = "x = 1\n", "".join(f"x{i} = {i}\n" for i in range(30))
    spam = [{"output_type": "stream", "name": "stdout", "text": "[adlib.backbones] lite0: imagenet\n" * 5}]
    stderr = [{"output_type": "stream", "name": "stderr", "text": "W1124 No CUDA runtime is found\n"}]
    assert hygiene_problems(_notebook([(short, [])])) == []
    assert any("stderr" in p for p in hygiene_problems(_notebook([(short, stderr)])))
    assert any("5 x" in p for p in hygiene_problems(_notebook([(short, spam)])))
    assert any("30 lines" in p for p in hygiene_problems(_notebook([(long, [])])))


def test_the_exercise_checker_finds_shared_untagged_and_missing_solutions():
    def md(text):
        return {"cell_type": "markdown", "source": text, "metadata": {}}

    def code(tagged=True):
        meta = {"tags": ["solution"], "jupyter": {"source_hidden": True}} if tagged else {}
        return {"cell_type": "code", "source": "x = 1", "metadata": meta, "outputs": []}

    good = [md("## Exercises\n\n**1. One.** text"), code(), md("**2.** two"), code(), md("## Timing"), code(False)]
    assert exercise_problems({"cells": good}) == []
    shared = [md("## Exercises\n\n**1. One.**"), code(), md("**2. Two.**\n\n**3. Three.**"), code()]
    assert any("exercises 2 and 3 share" in p for p in exercise_problems({"cells": shared}))
    untagged = [md("## Exercises"), md("**1.** one"), code(tagged=False)]
    assert any("tagged 'solution'" in p for p in exercise_problems({"cells": untagged}))
    missing = [md("## Exercises"), md("**1.** one"), md("**2.** two"), code(), md("## Timing")]
    assert any("exercise 1 has no solution" in p for p in exercise_problems({"cells": missing}))
    assert any("exercise 1 has no solution" in p for p in exercise_problems({"cells": [md("## Exercises\n**1.** a")]}))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_exercise_has_its_own_collapsed_solution_cell(path):
    problems = exercise_problems(json.loads(path.read_text()))
    assert not problems, f"{path.name}: " + "; ".join(problems)


# Notebooks executed before these rules (none since the re-execution of December 2026): a strict xfail for each name
# listed here, which fails as soon as that notebook is clean, so the list cannot outlive its reason.
PREDATE_THE_RULES: set[str] = set()


@pytest.mark.parametrize("path", [pytest.param(p, marks=pytest.mark.xfail(strict=True, reason="executed before the "
                                               "hygiene rules; re-executed with the open issues"))
                                  if p.stem[:2] in PREDATE_THE_RULES else p for p in NOTEBOOKS],
                         ids=lambda p: p.stem)
def test_committed_notebook_is_clean(path):
    problems = hygiene_problems(json.loads(path.read_text()))
    assert not problems, f"{path.name}: " + "; ".join(problems[:8])


def test_progress_bars_are_off_in_headless_runs(monkeypatch):
    from adlib.progress import progress_bar

    monkeypatch.setenv("ADLIB_HEADLESS", "1")
    assert progress_bar(range(3)).disable
    monkeypatch.setenv("ADLIB_HEADLESS", "0")
    assert not progress_bar(range(3)).disable
    assert progress_bar(range(3), disable=True).disable


def test_a_backbone_announces_its_weights_once(capsys):
    from adlib.backbones import weights

    weights._say("test-only message: lite0 uses imagenet-lite weights")
    weights._say("test-only message: lite0 uses imagenet-lite weights")
    assert capsys.readouterr().out.count("test-only message") == 1
