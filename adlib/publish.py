"""Copy an executed notebook into notebooks/ so that it can be both read and re-tested.

papermill adds an ``injected-parameters`` cell (e.g. ``profile = "cpu"``) after the ``parameters`` cell.
Kept in the committed notebook, that cell would make nbval re-run the long cpu profile in the test suite;
so it is dropped here and the profile it set is recorded in the notebook metadata instead (the outputs
themselves also print the profile they ran with).

    python -m adlib.publish executed/cpu/00_data_and_protocols.ipynb [more.ipynb ...] [--to notebooks]
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import nbformat

from .io import atomic_write_text
from .provenance import git_commit


def strip_injected_parameters(nb: nbformat.NotebookNode) -> dict:
    """Remove papermill's injected-parameters cell(s) in place; return the parameters they set."""
    injected = [c for c in nb.cells if "injected-parameters" in c.get("metadata", {}).get("tags", [])]
    nb.cells = [c for c in nb.cells if c not in injected]
    return dict(nb.metadata.get("papermill", {}).get("parameters", {}))


def publish(executed: Path, target_dir: Path, commit: str | None = None) -> Path:
    """Copy ``executed`` into ``target_dir`` without papermill's injected cell, recording ``commit``: the code the
    run started on (run_all.sh passes it), else HEAD now. A "+dirty" or unknown commit is refused."""
    nb = nbformat.read(executed, as_version=4)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    if errors:
        raise SystemExit(f"{executed} contains {len(errors)} error output(s); fix the run before publishing it")
    params = strip_injected_parameters(nb)
    # the commit whose code produced these outputs: the one the run started on (HEAD at publish time may be later,
    # when something was committed during a long run); adlib.verify's staleness check compares it with HEAD, and a
    # "+dirty" one fails the tests
    params["git_commit"] = commit = commit or git_commit()
    if (commit.endswith("+dirty") or commit == "unknown") and os.environ.get("ADLIB_PUBLISH_DIRTY", "0") != "1":
        raise SystemExit(f"{executed} was executed on uncommitted code ({commit}): commit adlib/ and notebooks/*.py "
                         "first, re-execute, then publish (ADLIB_PUBLISH_DIRTY=1 publishes anyway, for a draft)")
    nb.metadata["adlib"] = {"executed_with": params}
    target = target_dir / executed.name
    atomic_write_text(target, nbformat.writes(nb))
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--to", type=Path, default=Path(__file__).resolve().parent.parent / "notebooks")
    parser.add_argument("--commit", help="the commit the execution started on (default: HEAD now)")
    args = parser.parse_args(argv)
    for path in args.notebooks:
        print(f"published {path} -> {publish(path, args.to, args.commit)}")


if __name__ == "__main__":
    main()
