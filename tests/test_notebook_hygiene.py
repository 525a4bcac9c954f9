"""What a student sees in a committed notebook: no stderr output, no log line repeated over and over, no code cell
longer than a screen; and the library pieces that keep it so (progress bars off in headless runs, a backbone's
weights announced once)."""
from __future__ import annotations

import json
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
