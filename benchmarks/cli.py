"""CLI start-up benchmark: how long a user waits for ``shipyard --help`` and
``shipyard info``, against MLflow's CLI (``mlflow --help``, ``mlflow
experiments search``) and the floor (a bare ``python -c pass``), in one run.

Prints ``name: value`` lines, medians of ``--repeat`` runs in seconds, each a
fresh process (what a user's shell does). ``info`` runs on a workspace that
already exists (the second call onwards: no schema creation), and MLflow's
search on a SQLite tracking store that already exists.

Usage: ``python benchmarks/cli.py [--repeat N]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def timed(cmd: list[str], env: dict[str, str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if out.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed: {out.stderr[-500:]}")
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--mlflow", default=None,
                        help="the mlflow command (default: the one beside this Python)")
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="shipyard-cli-bench-")
    env = {**os.environ, "SHIPYARD_HOME": home, "MLFLOW_TRACKING_URI": f"sqlite:///{home}/mlflow.db"}
    shipyard = str(BIN / "shipyard")
    subprocess.run([shipyard, "info"], env=env, check=True, capture_output=True)  # create it
    results = {
        "floor_python_pass_s": timed([sys.executable, "-c", "pass"], env, args.repeat),
        "shipyard_help_s": timed([shipyard, "--help"], env, args.repeat),
        "shipyard_runs_help_s": timed([shipyard, "runs", "--help"], env, args.repeat),
        "shipyard_info_s": timed([shipyard, "info"], env, args.repeat),
    }
    mlflow = args.mlflow or shutil.which("mlflow", path=str(BIN))
    if mlflow:
        subprocess.run([mlflow, "experiments", "search"], env=env, check=True,
                       capture_output=True)
        results["mlflow_help_s"] = timed([mlflow, "--help"], env, max(3, args.repeat // 3))
        results["mlflow_experiments_search_s"] = timed([mlflow, "experiments", "search"], env,
                                                       max(3, args.repeat // 3))
    else:
        print("# mlflow not installed (make bench installs it): its lines are left out")
    for name, value in results.items():
        print(f"{name}: {value:.3f}")
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
