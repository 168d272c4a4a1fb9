"""``shipyard predict`` (batch scoring of a file) and ``shipyard build`` (a
container build context and KServe manifest for a model)."""

from __future__ import annotations

from typing import Annotated

import typer

from shipyard.cli._common import (console, json_option, open_workspace, print_json, record,
                                  stdout_reserved)


def predict_command(
    model: Annotated[str, typer.Argument(help="Model ref: fraud@champion, fraud@7.")],
    input: Annotated[str, typer.Option("--input", "-i", help="A .parquet or .csv file.")],
    output: Annotated[str, typer.Option("--output", "-o", help="The Parquet file to write.")],
    chunk_rows: Annotated[int, typer.Option(
        min=1, help="Rows read, scored and written at a time (bounds memory).")] = 50_000,
    columns_out: Annotated[list[str] | None, typer.Option(
        "--columns-out", help="Input column to copy to the output (repeatable, or "
                              "comma-separated); default all.")] = None,
    no_onnx: Annotated[bool, typer.Option(
        "--no-onnx", help="Use the Python model even where an ONNX graph exists.")] = False,
    as_json: Annotated[bool, json_option(
        "Print the result (model, rows, chunks, runtime, output) as JSON; progress goes "
        "to stderr.")] = False,
) -> None:
    """Score a file with a registered model, streaming it chunk by chunk into
    Parquet: the copied input columns, `prediction` and `proba_<class>`."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from shipyard.deploy import count_rows

    ws = open_workspace()
    columns = None
    if columns_out:
        columns = [c.strip() for item in columns_out for c in item.split(",") if c.strip()]
    with stdout_reserved(as_json), Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                  transient=True) as bar:
        task = bar.add_task(f"scoring with {model}", total=count_rows(input))
        result = ws.score(model, input, output, chunk_rows=chunk_rows, columns_out=columns,
                          onnx=not no_onnx, progress=lambda rows: bar.update(task, completed=rows))
    if as_json:
        print_json(record(result))
        return
    console.print(f"scored {result.rows:,} rows with {result.model} ({result.runtime}, "
                  f"{result.chunks} chunks) → {result.output}")


def build_command(
    model: Annotated[str, typer.Argument(help="Model ref: fraud@champion, fraud@7.")],
    out: Annotated[str, typer.Option("--out", help="Build context folder to write.")] = "build",
    image: Annotated[str | None, typer.Option(
        help="Image name for the KServe manifest (default shipyard-<model>:<version>).")] = None,
    as_json: Annotated[bool, json_option(
        "Print what was written (path, model, image, requirements) as JSON.")] = False,
) -> None:
    """Write a container build context for a model: Dockerfile, pinned
    requirements.txt, the model bundle (a workspace holding only this version)
    and a KServe InferenceService manifest. Builds no image."""
    from shipyard.deploy import build_context

    ws = open_workspace()
    built = build_context(ws, model, out, image=image)
    if as_json:
        print_json(record(built))
        return
    console.print(f"wrote {built.path}: Dockerfile, requirements.txt, bundle/ "
                  f"({built.model}), kserve.yaml (image {built.image})")
    console.print(f"next: docker build -t {built.image} {built.path}")
