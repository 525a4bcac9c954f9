"""The command-line entry point run_all.sh: argument checks, pass-through and output locations.

Fast: no notebook is executed and nothing is installed. Argument errors must exit before the environment
set-up; the other cases use the script's ADLIB_DRY_RUN=1 hook, which prints commands instead of running them.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "run_all.sh"
NUMBERS = sorted(p.name[:2] for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def run_script(*args, dry_run=False, cwd=None, extra_env=None):
    env = dict(os.environ)
    env["VIRTUAL_ENV"] = sys.prefix  # an active environment: no .venv is created
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.pop("ADLIB_DRY_RUN", None)
    env.pop("ADLIB_PROFILE", None)
    if dry_run:
        env["ADLIB_DRY_RUN"] = "1"
        # `./run_all.sh test` points these at a scratch folder; a dry run writes nothing, so show the defaults
        env.pop("ADLIB_FIGURES", None)
        env.pop("ADLIB_RESULTS", None)
    env.update(extra_env or {})
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=cwd or ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def assert_usage_error(proc, *words):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "unbound variable" not in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""  # nothing started, no set-up
    for word in words:
        assert word in lines[0]


def test_help_lists_commands_and_options():
    proc = run_script("--help")
    assert proc.returncode == 0, proc.stderr
    for word in ("--profile", "smoke", "cpu", "paper", "--output", "--only", "--publish", " test ", " lab ",
                 "ADLIB_DRY_RUN"):
        assert word in proc.stdout


def test_unknown_profile_fails_before_anything_starts(tmp_path):
    existed = (ROOT / "executed" / "nosuch").exists()
    proc = run_script("--profile", "nosuch", "--output", str(tmp_path))
    assert_usage_error(proc, "nosuch", "smoke", "cpu", "paper")
    assert not (tmp_path / "nosuch").exists()
    assert list(tmp_path.iterdir()) == []
    assert (ROOT / "executed" / "nosuch").exists() == existed


@pytest.mark.parametrize("option", ["--profile", "--output", "--only"])
def test_option_without_value_is_a_usage_error(option):
    assert_usage_error(run_script(option), option, "needs a value")
    assert_usage_error(run_script(option, "--publish"), option, "needs a value")
    assert_usage_error(run_script(option + "="), option, "needs a value")


@pytest.mark.parametrize("only", ["99", "0", "x"])
def test_only_unknown_notebook_names_available_ones(only):
    assert NUMBERS, "no numbered notebooks found"
    proc = run_script("--only", only, "--profile", "smoke")
    assert_usage_error(proc, f"'{only}'", " ".join(NUMBERS))


def test_unknown_argument_and_misplaced_subcommand():
    assert_usage_error(run_script("--bogus"), "--bogus")
    assert_usage_error(run_script("--profile", "cpu", "test"), "test", "first")


def test_publish_is_cpu_only():
    assert_usage_error(run_script("--profile", "smoke", "--publish"), "--publish", "cpu")


def test_test_mode_passes_every_argument_to_pytest():
    proc = run_script("test", "-k", "data", "--profile", "x", dry_run=True)
    assert proc.returncode == 0, proc.stderr
    line = next(l for l in proc.stdout.splitlines() if "-m pytest" in l)
    assert "(ADLIB_PROFILE=smoke)" in line
    assert line.endswith("-q -k data --profile x")


def test_lab_mode_starts_jupyterlab_in_notebooks():
    proc = run_script("lab", "--no-browser", dry_run=True)
    assert proc.returncode == 0, proc.stderr
    line = next(l for l in proc.stdout.splitlines() if "jupyter lab" in l)
    assert f"--ServerApp.root_dir={ROOT / 'notebooks'}" in line
    assert line.endswith("--no-browser")


def test_run_mode_absolute_output_and_profile_locations(tmp_path):
    out = tmp_path / "out"
    proc = run_script("--profile", "smoke", "--output", str(out) + "/", "--only", NUMBERS[0], dry_run=True)
    assert proc.returncode == 0, proc.stderr
    assert "//" not in proc.stdout
    assert f"executed notebooks: {out}/smoke" in proc.stdout
    assert f"figures:            {ROOT}/figures/smoke" in proc.stdout
    assert f"result tables:      {ROOT}/results/smoke" in proc.stdout
    papermill = [l for l in proc.stdout.splitlines() if "-m papermill" in l]
    assert len(papermill) == 1  # --only runs one notebook
    assert "(ADLIB_PROFILE=smoke)" in papermill[0] and "-p profile smoke" in papermill[0]
    assert not out.exists()  # a dry run creates nothing


def test_run_mode_cpu_writes_committed_locations_and_relative_output_follows_caller(tmp_path):
    proc = run_script("--profile", "cpu", "--output", "rel", "--only", NUMBERS[0], "--publish",
                      dry_run=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"executed notebooks: {tmp_path}/rel/cpu" in proc.stdout
    assert f"figures:            {ROOT}/figures\n" in proc.stdout
    assert f"result tables:      {ROOT}/results\n" in proc.stdout
    assert "(ADLIB_PROFILE=cpu)" in next(l for l in proc.stdout.splitlines() if "-m papermill" in l)
    assert any("-m adlib.publish" in l and "--to notebooks" in l for l in proc.stdout.splitlines())


def test_script_leaves_matplotlib_backend_to_the_kernel():
    text = SCRIPT.read_text()
    assert "MPLBACKEND=" not in text
