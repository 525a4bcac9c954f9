"""Same numbers on every machine: one torch thread per process in every profile ($ADLIB_THREADS overrides with a
warning and is recorded), and the $ADLIB_MAX_STEPS cap of adlib.config for check runs."""
import ast
import os
from pathlib import Path

import pytest
import torch

from adlib import config, profiles, runtime
from adlib.provenance import run_provenance

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def restore_threads(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.delenv("ADLIB_THREADS", raising=False)
    monkeypatch.setattr(runtime, "_warned_override", False)
    for var in runtime.THREAD_ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    yield monkeypatch
    torch.set_num_threads(before)


@pytest.mark.parametrize("name", sorted(profiles.PROFILES))
def test_every_profile_computes_with_one_thread_whatever_the_cores(restore_threads, name):
    torch.set_num_threads(2)
    assert profiles.PROFILES[name].default_threads == 1
    profiles.activate(name)
    assert torch.get_num_threads() == 1
    assert run_provenance()["threads"] == 1
    assert os.environ["OMP_NUM_THREADS"] == "1"  # child processes (joblib workers) inherit the count


def test_thread_override_warns_once_and_is_recorded(restore_threads, capsys):
    restore_threads.setenv("ADLIB_THREADS", "2")
    assert runtime.set_cpu_threads() == 2 and torch.get_num_threads() == 2
    assert runtime.set_cpu_threads() == 2
    out = capsys.readouterr().out
    assert out.count("warning") == 1 and "ADLIB_THREADS=2" in out and "differ" in out
    assert run_provenance()["threads"] == 2
    restore_threads.setenv("ADLIB_THREADS", "1")  # asking for the default is no override worth a warning
    restore_threads.setattr(runtime, "_warned_override", False)
    assert runtime.set_cpu_threads() == 1 and "warning" not in capsys.readouterr().out


@pytest.mark.parametrize("bad", ["0", "two", "-3", "1.5"])
def test_bad_thread_count_says_what_to_do(restore_threads, bad):
    restore_threads.setenv("ADLIB_THREADS", bad)
    with pytest.raises(ValueError, match="ADLIB_THREADS.*1 or more.*unset it"):
        runtime.set_cpu_threads()


def test_runtime_is_a_leaf_module():
    """adlib.runtime imports nothing from adlib except adlib.paths, so any module (training, profiles) can use it."""
    tree = ast.parse((ROOT / "adlib" / "runtime.py").read_text())
    imported = {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level}
    imported |= {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names
                 if a.name.startswith("adlib")}
    assert imported <= {"paths", "adlib.paths"}, imported


def test_choose_device():
    assert runtime.choose_device("cpu") == torch.device("cpu")
    assert runtime.choose_device().type == ("cuda" if torch.cuda.is_available() else "cpu")


# ---- ADLIB_MAX_STEPS -----------------------------------------------------------------------------------------

def test_cap_lowers_every_step_and_epoch_count_and_nothing_else():
    values = {"steps": 5000, "epochs": 1, "eval_every": 200, "patience": 5, "grid_steps": 3000,
              "dpa": {"steps": 10, "batch_size": 128}, "kwargs": {"f_anogan": {"gan_steps": 2000, "encoder_steps": 3}},
              "step_keys": ["steps"], "speed": {"steps": 5, "layers": [["relu3_2"]]}, "flag_steps": True}
    lowered = config.cap_step_counts(values, 3)
    assert lowered == {"steps": (5000, 3), "grid_steps": (3000, 3), "dpa.steps": (10, 3),
                       "kwargs.f_anogan.gan_steps": (2000, 3), "speed.steps": (5, 3)}
    assert values["eval_every"] == 200 and values["patience"] == 5 and values["dpa"]["batch_size"] == 128
    assert values["epochs"] == 1 and values["kwargs"]["f_anogan"]["encoder_steps"] == 3  # already below
    assert values["step_keys"] == ["steps"] and values["flag_steps"] is True


def _step_counts(value, prefix=""):
    if isinstance(value, dict) or hasattr(value, "items"):
        for key, item in value.items():
            yield from _step_counts(item, f"{prefix}{key}.")
            if config.is_step_count_key(key) and isinstance(item, int) and not isinstance(item, bool):
                yield f"{prefix}{key}", item


CONFIGS = sorted(p.stem for p in config.CONFIG_DIR.glob("*.toml"))


@pytest.mark.parametrize("notebook", CONFIGS)
def test_max_steps_caps_the_paper_profile_of_every_notebook(notebook, monkeypatch, capsys):
    monkeypatch.delenv("ADLIB_MAX_STEPS", raising=False)
    full = config.load_run_config(notebook, "paper")
    assert full.max_steps is None
    monkeypatch.setenv("ADLIB_MAX_STEPS", "2")
    capped = config.load_run_config(notebook, "paper")
    assert capped.max_steps == 2 and capped.sha256 != full.sha256
    counts = dict(_step_counts(capped.values))
    assert counts and all(v <= 2 for v in counts.values()), counts
    assert any(v > 2 for _, v in _step_counts(full.values))  # the paper profile has long runs to cap
    assert "ADLIB_MAX_STEPS=2" in capsys.readouterr().out
    # everything that is not a step count stays
    def others(cfg):
        return {k: v for k, v in cfg.as_dict().items() if not isinstance(v, dict) and not config.is_step_count_key(k)}
    assert others(capped) == others(full)


def test_max_steps_must_be_a_positive_whole_number(monkeypatch):
    for bad in ("0", "x", "-2"):
        monkeypatch.setenv("ADLIB_MAX_STEPS", bad)
        with pytest.raises(ValueError, match="ADLIB_MAX_STEPS.*1 or more"):
            config.load_run_config(CONFIGS[0], "smoke")


def test_keep_torch_threads_restores_a_count_changed_inside(restore_threads):
    torch.set_num_threads(1)
    with runtime.keep_torch_threads():
        torch.set_num_threads(2)  # what numba does to the shared OpenMP pool
    assert torch.get_num_threads() == 1


def test_umap_projection_leaves_torch_on_one_thread(restore_threads):
    # measured: one UMAP projection (numba) left torch computing on every core, so notebook 05's later rows
    # recorded threads=2 and depended on the core count
    np = pytest.importorskip("numpy")
    pytest.importorskip("umap")
    from adlib import plots

    torch.set_num_threads(1)
    plots.embed_2d(np.random.default_rng(0).normal(size=(120, 8)), method="umap")
    assert torch.get_num_threads() == 1


def test_committed_rows_were_computed_with_one_thread():
    # every committed cpu-profile row records the thread count it was computed with (run_provenance)
    import pandas as pd

    offenders = {}
    for path in sorted((ROOT / "results").glob("[0-9][0-9]_*.csv")):
        frame = pd.read_csv(path)
        if "threads" in frame.columns:
            counts = frame["threads"].dropna()
            if (counts != 1).any():
                offenders[path.name] = sorted(set(counts.astype(int)))
    assert not offenders, f"rows computed with more than one thread (numbers depend on the core count): {offenders}"
