"""A model version's reference profile, read back for monitoring (built at
registration by the registry; see docs/monitoring.md §1)."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shipyard.errors import MonitorError

if TYPE_CHECKING:
    import pandas as pd

    from shipyard import Workspace
    from shipyard.data import FrameSketch
    from shipyard.registry import ModelVersion


@dataclass
class Reference:
    """What a version saw in training and answered there.

    Attributes
    ----------
    version
        ``fraud@3``.
    dataset
        The training dataset version (``adult@1``).
    rows, prediction_rows
        Training rows sketched; rows scored for :attr:`prediction`.
    inputs
        :class:`~shipyard.data.FrameSketch` of the signature's input columns.
    prediction
        :class:`~shipyard.data.FrameSketch` of ``label`` (labels or values)
        and, for classifiers with probabilities, ``score``.
    kinds
        ``{input column: numeric | categorical | datetime | text}``.
    task, classes
        ``binary``/``multiclass``/``regression`` and the class labels.
    digest
        The reference blob (tag ``reference.digest`` of the version).
    created_at
        Epoch seconds.
    sample
        Up to 2,000 seeded random training rows (inputs), read on first use.
    labelled
        The labelled rows stored for the performance estimators:
        ``{"digest", "rows", "target", "source" (test_split | training),
        "dataset", ...}``, ``{"skipped": why}``, or None for a reference
        built before they were stored.
    """

    version: str
    dataset: str | None
    rows: int
    prediction_rows: int
    inputs: FrameSketch
    prediction: FrameSketch
    kinds: dict[str, str]
    task: str
    classes: list | None
    digest: str
    created_at: float
    sample_digest: str | None = None
    labelled: dict[str, Any] | None = None
    _ws: Any = field(default=None, repr=False, compare=False)
    _sample: Any = field(default=None, repr=False, compare=False)

    @property
    def sample(self) -> pd.DataFrame:
        if self._sample is None:
            import pandas as pd

            if self.sample_digest is None or self._ws is None:
                self._sample = pd.DataFrame(columns=list(self.kinds))
            else:
                self._sample = pd.read_parquet(io.BytesIO(
                    self._ws.artifacts.get_bytes(self.sample_digest)))
        return self._sample

    @classmethod
    def from_document(cls, document: dict[str, Any], *, version: str, digest: str,
                      ws: Any = None) -> Reference:
        """The reference a stored JSON document describes.

        Raises
        ------
        MonitorError
            It is not a reference document.
        """
        from shipyard.data import FrameSketch
        from shipyard.errors import DataError

        if document.get("format") != "shipyard.reference/1":
            raise MonitorError(f"the reference blob {digest[:12]} of {version} is not a "
                               "reference profile", hint="rebuild it: remove the tag "
                               "reference.digest and call shipyard.monitor.reference again")
        try:
            return cls(version=version, dataset=document.get("dataset"),
                       rows=int(document["rows"]),
                       prediction_rows=int(document.get("prediction_rows", 0)),
                       inputs=FrameSketch.from_dict(document["inputs"]),
                       prediction=FrameSketch.from_dict(document["prediction"]),
                       kinds=dict(document["kinds"]), task=str(document["task"]),
                       classes=document.get("classes"), digest=digest,
                       created_at=float(document.get("created_at", 0.0)),
                       sample_digest=document.get("sample"),
                       labelled=document.get("labelled"), _ws=ws)
        except (KeyError, TypeError, ValueError, DataError) as exc:
            raise MonitorError(f"the reference profile of {version} cannot be read: {exc}"
                               ) from exc


def reference(ws: Workspace, version: ModelVersion | str) -> Reference:
    """The reference profile of ``version`` (a :class:`ModelVersion` or a ref
    like ``fraud@3``).

    Built at registration. For a version registered before references
    existed, it is built now from the version's training dataset and stored
    once (tag ``reference.digest``, audit entry ``model.reference``): the one
    case in which monitoring reads training data.

    Raises
    ------
    MonitorError
        The version has no reference and none can be built (no training
        dataset recorded, the model cannot score it, datasketches missing:
        the log says which), or the stored one cannot be read.
    NotFoundError
        No such version.
    """
    from shipyard.registry import REFERENCE_TAG, attach_reference

    if isinstance(version, str):
        version = ws.models.get(version)
    digest = version.tags.get(REFERENCE_TAG)
    if not digest:
        version = attach_reference(ws, version)
        digest = version.tags.get(REFERENCE_TAG)
        if not digest:
            raise MonitorError(
                f"{version.ref} has no reference profile and none could be built (see the "
                "warning logged just before)",
                hint="register a version trained on a registered dataset, with "
                     "datasketches installed (pip install 'shipyard[monitor]')")
    try:
        document = json.loads(ws.artifacts.get_bytes(digest))
    except ValueError as exc:
        raise MonitorError(f"the reference blob {digest[:12]} of {version.ref} is not JSON"
                           ) from exc
    return Reference.from_document(document, version=version.ref, digest=digest, ws=ws)
