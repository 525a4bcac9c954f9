"""The benchmark of notebook 07: every registered detector on every dataset under one protocol.

One module per job:

``grid``              the grid (detectors x datasets x seeds [x K]) as `Job` s, `ConfigRef` (the run
                      configuration, picklable for workers), each job's grid row
``reuse``             matching jobs against the rows the paper notebooks already wrote (``results/*.csv`` for the
                      cpu profile, ``results/<profile>/`` for the others) by configuration hash; the rest runs
``execution``         running them through `adlib.experiment.run_experiment` with `joblib.Parallel` (loky, or
                      Ray when ``$ADLIB_RAY_ADDRESS`` is set), with a resumable checkpoint
``statistics``        `cell_stats` (mean ± std, bootstrap CIs, chance and degenerate-threshold marks),
                      `rank_methods` (autorank Friedman/Nemenyi), `leaderboard`, `resources` (cost of the runs)
``paper_comparison``  `printed_numbers` and `paper_vs_ours`: every paper's printed number beside ours, with the
                      reasons for the gap; `reading_tables` (one per paper) for the notebook
``figures``           the leaderboard's bar chart, the cost panels, the critical-difference diagram
``discussion``        `conclusions`: the notebook's closing sentences, generated from the tables (adlib.verdicts)

This is a base module: detectors are created through the registry (`adlib.detectors.create`), never by
importing a method module. Every name is re-exported here (``from adlib import benchmark as bench``; ``bench.X``).
To monkeypatch a function, patch the module that owns it (e.g. ``adlib.benchmark.execution.run_job``).
"""
from ..paths import PROJECT_ROOT  # tests read the committed rows under it
from ..paths import results_dir_of as results_folder_for  # a profile's rows: results/ or results/<profile>/
from .execution import RAY_ENV, job_key, read_finished, run_job, run_jobs, schedule
from .grid import ROW_COLUMNS, UNSUPERVISED, ConfigRef, Job, build_grid, dataset_column, grid_frame, weak_block
from .paper_comparison import (PACKAGE_DIR, PLAIN_VARIANTS, paper_vs_ours, printed_numbers, reading_tables, reasons,
                               short_reason, unmatched_summary)
from .reuse import (FINGERPRINT_COLUMNS, cell_sha256, data_fingerprint, existing_rows, matching_row, matching_rows,
                    plan_grid, reuse_summary)
from .statistics import (CELL_LEGEND, bootstrap_ci, cell_stats, cell_text, complete_block, leaderboard, rank_methods,
                         reading_leaderboard, resources)
from .figures import auroc_bars, cost_panels, critical_difference
from .discussion import conclusions

__all__ = ["Job", "ConfigRef", "build_grid", "existing_rows", "data_fingerprint", "cell_sha256", "matching_rows",
           "matching_row", "plan_grid", "reuse_summary", "job_key", "read_finished", "run_job", "run_jobs", "schedule",
           "grid_frame", "bootstrap_ci", "cell_stats", "cell_text", "complete_block", "rank_methods", "leaderboard",
           "resources", "reading_leaderboard", "printed_numbers", "paper_vs_ours", "reasons", "short_reason",
           "reading_tables",
           "unmatched_summary", "results_folder_for", "weak_block", "auroc_bars", "cost_panels",
           "critical_difference", "conclusions",
           # constants and helpers that notebook 07 and the tests read as bench.X
           "PROJECT_ROOT", "RAY_ENV", "ROW_COLUMNS", "UNSUPERVISED", "dataset_column", "PACKAGE_DIR", "PLAIN_VARIANTS",
           "FINGERPRINT_COLUMNS", "CELL_LEGEND"]
