"""Deploy: everything about putting a model version to work that is not HTTP.

- deployments and rollout policy (:class:`Deployments`, :class:`Deployment`,
  canary/A-B bucketing, automatic-rollback windows), stored and audited;
- :class:`LoadedModel`, a version in memory ready to predict, and the
  :class:`Schema` that turns JSON rows/columns into a validated frame;
- batch scoring of files (:func:`score_file`);
- build files for a container image and a KServe manifest
  (:func:`build_context`);
- the prediction log and feedback, written by servers and read by
  :func:`read_predictions` / :func:`read_feedback`.

The server (:mod:`shipyard.serve`) sits on top and only speaks HTTP.

>>> from shipyard.deploy import bucket
>>> 0 <= bucket("user-7", "fraud") < 100
True

Names resolve lazily, so ``import shipyard.deploy`` loads no pandas or pyarrow.
"""

from __future__ import annotations

from shipyard.lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(["Breach", "Deployment", "DeploymentRecord", "Deployments",
                     "OutcomeWindow", "RollbackPolicy", "Routing", "STRATEGIES", "bucket",
                     "load_deployment", "load_deployments", "rollback_actor"],
                    "shipyard.deploy._rollout"),
    **dict.fromkeys(["LoadedModel", "Prediction"], "shipyard.deploy._loaded"),
    **dict.fromkeys(["Column", "Columns", "Schema", "frame_from_columns", "frame_from_records",
                     "frame_from_rows", "invalid"], "shipyard.deploy._schema"),
    **dict.fromkeys(["ScoreResult", "count_rows", "score_file"], "shipyard.deploy._scoring"),
    **dict.fromkeys(["BuildContext", "build_context", "export_bundle", "pinned_requirements"],
                    "shipyard.deploy._build"),
    **dict.fromkeys(["PredictionLog", "read_feedback", "read_predictions"],
                    "shipyard.deploy._prediction_log"),
    "DeploymentError": "shipyard.errors",
}
__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
