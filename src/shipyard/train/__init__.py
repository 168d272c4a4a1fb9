"""Training: project specs, preprocessing, hyperparameter search, executors,
reproducible tracked models and safe model artifacts.

Importing this package is cheap: each public name is imported from its
private module on first use, so scikit-learn, LightGBM and torch load only
when needed.

>>> import shipyard.train
>>> shipyard.train.validate_estimator("sklearn.tree.DecisionTreeClassifier").__name__
'DecisionTreeClassifier'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shipyard.lazy import lazy_exports

if TYPE_CHECKING:
    from shipyard.train._artifacts import LightGBMModel, ModelArtifact, load_model, save_model
    from shipyard.train._imbalance import Rebalanced, class_weights, rebalance
    from shipyard.train._metrics import METRICS, Metric, direction, metric, needs_proba, score
    from shipyard.train._preprocess import (DateParts, TextColumn, build_preprocessor,
                                            column_kinds)
    from shipyard.train._spec import (PARAM_TYPES, CandidateSpec, CategoricalParam,
                                      DatasetRef, FeatureSpec, FloatParam, IntParam,
                                      ProjectSpec, SearchSpec, SplitSpec, TrainSpec,
                                      resolvable_problems, validate_estimator)
    from shipyard.train._thresholded import ThresholdedModel
    from shipyard.train._space import grid_of, make_pruner, make_sampler, suggest
    from shipyard.train._split import Split, cv_folds, make_split
    from shipyard.train._torch_mlp import TorchMLPClassifier, TorchMLPRegressor
    from shipyard.train._cost import CostModel
    from shipyard.train._executors import EXECUTORS, Executor, make_executor
    from shipyard.train._reproduce import ReproItem, ReproReport, reproduce
    from shipyard.train._study import CandidateResult
    from shipyard.train._trainer import (TrainResult, infer_signature, print_result, train,
                                         train_project)

#: Public name -> private module that defines it (resolved lazily).
_EXPORTS = {
    **dict.fromkeys(
        ["PARAM_TYPES", "CandidateSpec", "CategoricalParam", "DatasetRef", "FeatureSpec",
         "FloatParam", "IntParam", "ProjectSpec", "SearchSpec", "SplitSpec", "TrainSpec",
         "resolvable_problems", "validate_estimator"], "shipyard.train._spec"),
    "ThresholdedModel": "shipyard.train._thresholded",
    **dict.fromkeys(["DateParts", "TextColumn", "build_preprocessor", "column_kinds"],
                    "shipyard.train._preprocess"),
    **dict.fromkeys(["LightGBMModel", "ModelArtifact", "canonical_json", "load_model",
                     "save_model"],
                    "shipyard.train._artifacts"),
    **dict.fromkeys(["TorchMLPClassifier", "TorchMLPRegressor"], "shipyard.train._torch_mlp"),
    **dict.fromkeys(["Split", "cv_folds", "make_split"], "shipyard.train._split"),
    **dict.fromkeys(["grid_of", "make_pruner", "make_sampler", "suggest"],
                    "shipyard.train._space"),
    **dict.fromkeys(["METRICS", "Metric", "direction", "metric", "needs_proba", "score"],
                    "shipyard.train._metrics"),
    **dict.fromkeys(["Rebalanced", "class_weights", "rebalance"], "shipyard.train._imbalance"),
    "CostModel": "shipyard.train._cost",
    **dict.fromkeys(["EXECUTORS", "Executor", "make_executor"], "shipyard.train._executors"),
    **dict.fromkeys(["ReproItem", "ReproReport", "reproduce"], "shipyard.train._reproduce"),
    "CandidateResult": "shipyard.train._study",
    **dict.fromkeys(["TrainResult", "infer_signature", "print_result", "train",
                     "train_project"], "shipyard.train._trainer"),
}
__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
