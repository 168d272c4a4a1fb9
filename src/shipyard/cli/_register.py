"""`shipyard models register NAME SOURCE`: a training run, a model file or an
MLflow model folder becomes the next version of NAME."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from shipyard.cli._common import (
    console,
    json_option,
    open_workspace,
    print_json,
    record,
    stdout_reserved,
)


def register_command(
    name: Annotated[str, typer.Argument(help="Model name (created on first use).")],
    source: Annotated[str, typer.Argument(
        metavar="RUN_OR_PATH",
        help="A training run (id or unique prefix); or a model trained elsewhere: an ONNX "
             "file (.onnx), a skops file (.skops), a LightGBM text model (.txt), an XGBoost "
             "JSON model (.json), or an MLflow model folder (with an MLmodel file). Pickle "
             "files are refused.")],
    sample: Annotated[Optional[str], typer.Option(
        "--sample", metavar="FILE",
        help="Input rows (CSV, Parquet, JSON or JSONL) to infer the signature from and check "
             "the model on; needed for a model file other than ONNX (an MLflow model's input "
             "example is used when it has one).")] = None,
    target: Annotated[Optional[str], typer.Option(
        help="Name of the column the model predicts, recorded in its signature.")] = None,
    task: Annotated[Optional[str], typer.Option(
        help="For an ONNX graph: read its outputs as regression, binary or multiclass "
             "(default: inferred from them).")] = None,
    description: Annotated[Optional[str], typer.Option(help="What this version is.")] = None,
    reason: Annotated[Optional[str], typer.Option(
        "--reason", "-r", help="Why (recorded in the audit log).")] = None,
    as_json: Annotated[bool, json_option(
        "Print the version (ref, run, model digest, signature, tags, ...) as JSON; `new` is "
        "false when the same model was registered already.")] = False,
) -> None:
    """Register a training run's model, or a model file, as the next version of NAME.

    A model file is stored in a safe format (never pickle), its signature
    inferred from --sample, and logged into a run of experiment `import`;
    then it is registered like a trained model (ONNX fast path included)."""
    options = {"sample": sample, "target": target, "task": task}
    given = {k: v for k, v in options.items() if v is not None}
    with stdout_reserved(as_json):
        v = open_workspace().models.register(name, source, description=description,
                                             reason=reason, **given)
    if as_json:
        print_json(record(v, ref=v.ref))
        return
    from rich.markup import escape

    verb = "registered" if v.new else "already registered as"
    onnx = v.tags.get("onnx")
    console.print(f"{verb} [bold]{v.ref}[/] (run {v.run_id[:8]}, model "
                  f"{v.artifact_digest[:12]}" + (f", onnx: {escape(onnx)}" if onnx else "") + ")")
