"""scripts/reproduction_summary.py turns a `./run_all.sh verify` report into the README's generated sentences."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("reproduction_summary", ROOT / "scripts" / "reproduction_summary.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _report(folder: Path, statuses: list[str], cells: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"table": [f"0{i}_t.csv" for i in range(len(statuses))], "status": statuses,
                  "rows_compared": [4] * len(statuses),
                  "rows_identical": [4 if s == "ok" else 3 for s in statuses]}).to_csv(folder / "reproduction.csv",
                                                                                        index=False)
    pd.DataFrame(cells, columns=["table", "row", "column", "committed", "fresh", "difference"]).to_csv(
        folder / "reproduction_cells.csv", index=False)
    return folder


def test_same_kind_block_states_the_counts_it_was_given(tmp_path, capsys):
    script = _script()
    report = _report(tmp_path / "ok", ["ok", "ok"], [])
    assert script.main(["--report", str(report), "--out", str(tmp_path / "out"), "--same-kind", "--wall", "9 min"]) == 0
    block = capsys.readouterr().out
    assert block.startswith(script.SAME_START) and block.rstrip().endswith(script.SAME_END)
    assert "2 of 2 tables and 8 of 8 rows reproduced exactly (every compared number identical" in block
    assert "9 min" in block and (tmp_path / "out" / "summary.csv").is_file()


def test_a_moved_auroc_is_reported_with_its_size(tmp_path, capsys):
    script = _script()
    cells = [{"table": "01_t.csv", "row": "method=AE", "column": "AUROC", "committed": "0.61", "fresh": "0.64",
              "difference": 0.03}]
    report = _report(tmp_path / "bad", ["ok", "differs"], cells)
    script.main(["--report", str(report), "--out", str(tmp_path / "out"), "--same-kind"])
    block = capsys.readouterr().out
    assert "1 of 2 tables and 7 of 8 rows" in block and "1 table(s) differ, largest test-AUROC move 0.0300" in block
