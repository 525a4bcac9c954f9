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
                 "ADLIB_DRY_RUN", "--jobs", "--no-report", "report/index.html", " verify ", "--tolerance",
                 "ADLIB_MAX_STEPS", "ADLIB_THREADS", "reproduction"):
        assert word in proc.stdout


def test_unknown_profile_fails_before_anything_starts(tmp_path):
    existed = (ROOT / "executed" / "nosuch").exists()
    proc = run_script("--profile", "nosuch", "--output", str(tmp_path))
    assert_usage_error(proc, "nosuch", "smoke", "cpu", "paper")
    assert not (tmp_path / "nosuch").exists()
    assert list(tmp_path.iterdir()) == []
    assert (ROOT / "executed" / "nosuch").exists() == existed


@pytest.mark.parametrize("option", ["--profile", "--output", "--only", "--jobs", "--tolerance"])
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
    assert_usage_error(run_script("--profile", "cpu", "verify"), "verify", "first")


def test_publish_is_cpu_only():
    assert_usage_error(run_script("--profile", "smoke", "--publish"), "--publish", "cpu")


def test_test_mode_passes_every_argument_to_pytest():
    proc = run_script("test", "-k", "data", "--profile", "x", dry_run=True)
    assert proc.returncode == 0, proc.stderr
    line = next(l for l in proc.stdout.splitlines() if "-m pytest" in l)
    assert "(ADLIB_PROFILE=smoke)" in line
    assert line.endswith("-q -k data --profile x")


@pytest.mark.parametrize("workers,expected", [("2", "-n 2 --dist loadfile"), ("0", None), ("1", None)])
def test_test_mode_spreads_test_files_over_workers(monkeypatch, workers, expected):
    monkeypatch.setenv("ADLIB_TEST_WORKERS", workers)
    proc = run_script("test", dry_run=True)
    assert proc.returncode == 0, proc.stderr
    line = next(l for l in proc.stdout.splitlines() if "-m pytest" in l)
    assert (expected in line) if expected else (" -n " not in line), line


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


def test_only_takes_a_comma_separated_list(tmp_path):
    chosen = [NUMBERS[-1], NUMBERS[0]]  # any order: the run keeps the script's own order
    proc = run_script("--profile", "smoke", "--output", str(tmp_path / "out"), "--only", ",".join(chosen),
                      "--jobs", "1", dry_run=True)
    assert proc.returncode == 0, proc.stderr
    papermill = [l for l in proc.stdout.splitlines() if "-m papermill" in l]
    ran = sorted(Path(l.split("-m papermill ")[1].split()[0]).name[:2] for l in papermill)
    assert ran == sorted(chosen)


@pytest.mark.parametrize("only", [f"{NUMBERS[0]},99", f"{NUMBERS[0]},", f"{NUMBERS[0]} {NUMBERS[1]}"])
def test_only_list_with_an_unknown_or_malformed_entry_is_refused(only):
    proc = run_script("--only", only, "--profile", "smoke")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "--only" in proc.stderr and " ".join(NUMBERS) in proc.stderr


def test_run_mode_cpu_writes_committed_locations_and_relative_output_follows_caller(tmp_path):
    proc = run_script("--profile", "cpu", "--output", "rel", "--only", NUMBERS[0], "--publish",
                      dry_run=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"executed notebooks: {tmp_path}/rel/cpu" in proc.stdout
    assert f"figures:            {ROOT}/figures\n" in proc.stdout
    assert f"result tables:      {ROOT}/results\n" in proc.stdout
    assert "(ADLIB_PROFILE=cpu)" in next(l for l in proc.stdout.splitlines() if "-m papermill" in l)
    # publish records the commit the notebook started on (a dry run names it "dry-run"), not HEAD at publish time
    assert any("-m adlib.publish" in l and "--to notebooks --commit dry-run" in l for l in proc.stdout.splitlines())


def test_script_leaves_matplotlib_backend_to_the_kernel():
    text = SCRIPT.read_text()
    assert "MPLBACKEND=" not in text


# ---- the report and --jobs ---------------------------------------------------------------------------------

def papermill_lines(stdout):
    return [l for l in stdout.splitlines() if "-m papermill" in l]


def test_run_mode_ends_with_the_report_unless_no_report(tmp_path):
    out = tmp_path / "out"
    proc = run_script("--profile", "smoke", "--output", str(out), "--only", NUMBERS[0], dry_run=True)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    report = [i for i, l in enumerate(lines) if "-m adlib.report" in l]
    assert len(report) == 1
    line = lines[report[0]]
    assert f"--executed {out}/smoke" in line and f"--out {ROOT}/report" in line
    assert f"--leaderboard {ROOT}/results/smoke/07_leaderboard.csv" in line
    assert report[0] > max(i for i, l in enumerate(lines) if "-m papermill" in l)  # after the notebooks
    assert f"report:             {ROOT}/report/index.html" in proc.stdout
    assert not out.exists()

    proc = run_script("--profile", "smoke", "--output", str(out), "--only", NUMBERS[0], "--no-report", dry_run=True)
    assert proc.returncode == 0, proc.stderr
    assert "adlib.report" not in proc.stdout and "report:" not in proc.stdout
    assert len(papermill_lines(proc.stdout)) == 1


@pytest.mark.parametrize("mode", ["test", "lab"])
def test_no_report_in_test_and_lab_modes(mode):
    proc = run_script(mode, dry_run=True)
    assert proc.returncode == 0, proc.stderr
    assert "adlib.report" not in proc.stdout


@pytest.mark.parametrize("jobs", ["0", "x", "-1", "1.5", "02x"])
def test_jobs_must_be_a_positive_whole_number(jobs):
    assert_usage_error(run_script("--jobs", jobs, "--profile", "smoke"), "--jobs", f"'{jobs}'")
    assert_usage_error(run_script(f"--jobs={jobs}", "--profile", "smoke"), "--jobs", f"'{jobs}'")


@pytest.mark.parametrize("jobs", [[], ["--jobs", "2"]])
def test_a_bad_thread_count_is_a_usage_error(jobs):
    proc = run_script(*jobs, "--profile", "smoke", extra_env={"ADLIB_THREADS": "many"})
    assert_usage_error(proc, "ADLIB_THREADS", "'many'")


def expected_batches(jobs):
    """00 and 01 first, 07 last, the rest in between, each stage cut into batches of `jobs`."""
    first = [n for n in NUMBERS if n in ("00", "01")]
    last = [n for n in NUMBERS if n == "07"]
    middle = [n for n in NUMBERS if n not in first and n not in last]
    return [stage[i:i + jobs] for stage in (first, middle, last) for i in range(0, len(stage), jobs)]


def fake_nvidia_smi(tmp_path, gpus):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    tool = bin_dir / "nvidia-smi"
    tool.write_text("#!/bin/sh\n" + "".join(f'echo "GPU {g}: Fake GPU (UUID: GPU-{g})"\n' for g in range(gpus)))
    tool.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "CUDA_VISIBLE_DEVICES": ""}


@pytest.mark.parametrize("jobs", [1, 2, 3])
def test_jobs_order_and_batches(jobs, tmp_path):
    out = tmp_path / "out"
    env = fake_nvidia_smi(tmp_path, 1)  # one GPU: nobody gets a GPU of their own
    proc = run_script("--profile", "cpu", "--output", str(out), "--jobs", str(jobs), dry_run=True, extra_env=env)
    assert proc.returncode == 0, proc.stderr
    started = [l.split("notebooks/")[1][:2] for l in papermill_lines(proc.stdout)]
    batches = expected_batches(jobs)
    assert started == [n for batch in batches for n in batch]  # every notebook once, 01 before the rest, 07 last
    # one thread per notebook process whatever --jobs is: nothing divides or sets threads per notebook
    assert "ADLIB_THREADS=" not in proc.stdout and "OMP_NUM_THREADS=" not in proc.stdout
    assert "CUDA_VISIBLE_DEVICES" not in proc.stdout
    if jobs == 1:
        assert "[adlib] batch" not in proc.stdout  # sequential, as before
        assert all("--progress-bar" in l for l in papermill_lines(proc.stdout))
    else:
        heads = [l for l in proc.stdout.splitlines() if l.startswith("[adlib] batch ")]
        parallel = [b for b in batches if len(b) > 1]
        assert len(heads) == len(parallel)
        for head, batch in zip(heads, parallel):
            assert [name[:2] for name in head.split(": ", 1)[1].split()] == batch
        for line in papermill_lines(proc.stdout):
            alone = any(batch == [line.split("notebooks/")[1][:2]] for batch in batches)
            assert ("--progress-bar" in line) == alone and ("--log-output" in line) == (not alone)
        assert f"{out}/cpu/logs/{Path(sorted((ROOT / 'notebooks').glob('00_*.ipynb'))[0]).stem}.log" in proc.stdout
        assert f"up to {jobs} notebooks at a time, 1 CPU thread(s) each" in proc.stdout
    summary = [l for l in proc.stdout.splitlines() if l.startswith("  ") and l.rstrip().endswith(" ok")]
    assert len(summary) == len(NUMBERS)
    assert f"with --jobs {jobs}" in proc.stdout
    assert not out.exists()


def test_default_jobs_one_per_core_or_per_gpu(tmp_path):
    cores = int(subprocess.run(["nproc"], capture_output=True, text=True,
                               env={k: v for k, v in os.environ.items() if not k.startswith("OMP_")}).stdout)
    mem_jobs = next(int(l.split()[1]) for l in Path("/proc/meminfo").read_text().splitlines()
                    if l.startswith("MemTotal:")) // (3 * 1024 * 1024)
    proc = run_script("--profile", "cpu", "--output", str(tmp_path / "o"), dry_run=True,
                      extra_env=fake_nvidia_smi(tmp_path, 3))
    assert proc.returncode == 0, proc.stderr
    assert f"with --jobs {max(1, min(cores, mem_jobs))}" in proc.stdout
    proc = run_script("--profile", "paper", "--output", str(tmp_path / "o"), dry_run=True,
                      extra_env={**fake_nvidia_smi(tmp_path, 3), "ADLIB_MAX_STEPS": "2"})
    assert proc.returncode == 0, proc.stderr
    assert "with --jobs 3" in proc.stdout


def test_jobs_give_each_parallel_notebook_its_own_gpu(tmp_path):
    env = {**fake_nvidia_smi(tmp_path, 2), "ADLIB_MAX_STEPS": "2"}  # the cap lets the paper profile run without CUDA
    proc = run_script("--profile", "paper", "--jobs", "3", "--output", str(tmp_path / "o"), dry_run=True,
                      extra_env=env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    devices, slot = [], 0
    for line in lines:
        if line.startswith("[adlib] batch "):
            slot = 0
        elif "-m papermill" in line and "CUDA_VISIBLE_DEVICES=" in line:
            devices.append((slot, line.split("CUDA_VISIBLE_DEVICES=")[1].split()[0]))
            slot += 1
    assert len(devices) == sum(len(b) for b in expected_batches(3) if len(b) > 1)
    assert devices and all(gpu == str(s % 2) for s, gpu in devices)
    # a user's CUDA_VISIBLE_DEVICES is the list of GPUs to share out
    env["CUDA_VISIBLE_DEVICES"] = "5,7"
    proc = run_script("--profile", "paper", "--jobs", "2", "--output", str(tmp_path / "o"), dry_run=True,
                      extra_env=env)
    first, second = papermill_lines(proc.stdout)[:2]
    assert "CUDA_VISIBLE_DEVICES=5 " in first and "CUDA_VISIBLE_DEVICES=7 " in second


# ---- threads, the paper profile without a GPU, ADLIB_MAX_STEPS -----------------------------------------------

def test_thread_override_is_warned_about(tmp_path):
    proc = run_script("--profile", "smoke", "--only", NUMBERS[0], "--output", str(tmp_path / "o"), dry_run=True,
                      extra_env={"ADLIB_THREADS": "2"})
    assert proc.returncode == 0, proc.stderr
    assert "ADLIB_THREADS=2" in proc.stderr and "differ" in proc.stderr
    quiet = run_script("--profile", "smoke", "--only", NUMBERS[0], "--output", str(tmp_path / "o"), dry_run=True)
    assert "warning" not in quiet.stderr


def cuda_available():
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(cuda_available(), reason="this machine has a CUDA GPU")
def test_paper_profile_without_cuda_stops_in_one_line_unless_capped(tmp_path):
    for args in (["--profile", "paper"], ["verify", "--profile", "paper"]):
        proc = run_script(*args, "--output", str(tmp_path / "o"), dry_run=True)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
        assert "CUDA" in proc.stderr and "ADLIB_MAX_STEPS" in proc.stderr
        assert "papermill" not in proc.stdout and not (tmp_path / "o").exists()
    capped = run_script("--profile", "paper", "--output", str(tmp_path / "o"), "--only", NUMBERS[0],
                        dry_run=True, extra_env={"ADLIB_MAX_STEPS": "2"})
    assert capped.returncode == 0, capped.stderr
    assert len(papermill_lines(capped.stdout)) == 1
    # a capped run's numbers are no results: by default they stay out of the committed folders
    assert f"result tables:      {tmp_path}/o/paper/max_steps_2/results/paper" in capped.stdout
    assert f"figures:            {tmp_path}/o/paper/max_steps_2/figures/paper" in capped.stdout


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_max_steps_must_be_a_positive_whole_number(value):
    assert_usage_error(run_script("--profile", "smoke", extra_env={"ADLIB_MAX_STEPS": value}),
                       "ADLIB_MAX_STEPS", f"'{value}'")


def test_max_steps_cannot_be_published():
    assert_usage_error(run_script("--profile", "cpu", "--publish", extra_env={"ADLIB_MAX_STEPS": "2"}),
                       "ADLIB_MAX_STEPS", "--publish")


# ---- verify --------------------------------------------------------------------------------------------------

def test_verify_reexecutes_into_scratch_and_compares_with_the_committed_tables(tmp_path):
    out = tmp_path / "v"
    proc = run_script("verify", "--profile", "cpu", "--only", NUMBERS[0], "--output", str(out), "--jobs", "1",
                      dry_run=True)
    assert proc.returncode == 0, proc.stderr
    (papermill,) = papermill_lines(proc.stdout)
    assert f"{out}/cpu/{NUMBERS[0]}_" in papermill and "-p profile cpu" in papermill
    verify = next(l for l in proc.stdout.splitlines() if "-m adlib.verify" in l)
    assert f"--committed {ROOT}/results --fresh {out}/results --only {NUMBERS[0]} --tolerance 0" in verify
    assert f"--report {out}/cpu/reproduction" in verify
    assert f"result tables:      {out}/results\n" in proc.stdout  # never the committed folders
    assert f"figures:            {out}/figures\n" in proc.stdout
    assert "adlib.report" not in proc.stdout and "adlib.publish" not in proc.stdout
    assert not out.exists()  # a dry run creates nothing
    every = run_script("verify", "--profile", "cpu", "--tolerance", "1e-6", "--output", str(out), dry_run=True)
    verify = next(l for l in every.stdout.splitlines() if "-m adlib.verify" in l)
    assert f"--only {' '.join(NUMBERS)} --tolerance 1e-6" in verify
    assert len(papermill_lines(every.stdout)) == len(NUMBERS)


def test_verify_default_scratch_folder_is_under_executed():
    proc = run_script("verify", "--profile", "cpu", "--only", NUMBERS[0], dry_run=True)
    assert proc.returncode == 0, proc.stderr
    assert f"{ROOT}/executed/verify/cpu/reproduction" in proc.stdout


def test_verify_argument_errors(tmp_path):
    assert_usage_error(run_script("verify", "--publish"), "--publish", "verify")
    assert_usage_error(run_script("--tolerance", "0"), "--tolerance", "verify")
    for bad in ("-1", "x", "1e"):
        assert_usage_error(run_script("verify", "--tolerance", bad), "--tolerance", f"'{bad}'")
    assert_usage_error(run_script("verify", extra_env={"ADLIB_MAX_STEPS": "2"}), "ADLIB_MAX_STEPS")
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert_usage_error(run_script("verify", "--output", str(foreign)), str(foreign))
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_verify_without_committed_tables_says_so(tmp_path):
    empty = tmp_path / "results"
    empty.mkdir()
    proc = run_script("verify", "--profile", "smoke", "--output", str(tmp_path / "v"), dry_run=True,
                      extra_env={"ADLIB_RESULTS": str(empty)})
    assert proc.returncode == 1
    assert "nothing to verify" in proc.stderr and str(empty / "smoke") in proc.stderr
    assert "papermill" not in proc.stdout
