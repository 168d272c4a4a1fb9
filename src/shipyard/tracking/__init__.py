"""Experiment tracking: runs with params, metrics, tags, artifacts, inputs and
their environment; search, compare.

>>> import tempfile, shipyard
>>> ws = shipyard.Workspace.open(tempfile.mkdtemp())
>>> with ws.start_run("demo", params={"lr": 0.1}, seed=0) as run:
...     for step in range(3):
...         run.log_metric("loss", 1.0 / (step + 1))
>>> [r.metrics["loss"] for r in ws.search_runs("params.lr = 0.1 and metrics.loss < 0.5")]
[0.3333333333333333]
>>> ws.close()
"""

from shipyard.tracking._buffer import MetricBuffer
from shipyard.tracking._environment import capture_environment
from shipyard.tracking._records import STATUSES, Experiment, RunArtifact, RunInfo
from shipyard.tracking._runs import PROCESS_TAG, ActiveRun, RunProcess, Runs, process_tags

__all__ = ["PROCESS_TAG", "STATUSES", "ActiveRun", "Experiment", "MetricBuffer", "RunArtifact",
           "RunInfo", "RunProcess", "Runs", "capture_environment", "process_tags"]
