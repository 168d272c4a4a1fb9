"""``shipyard deploy MODEL``: store how servers route a model (single, canary,
A/B, shadow), or ``--show`` it with its history."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from shipyard.cli._common import console, fmt_time, open_workspace


def deploy_command(
    model: Annotated[str, typer.Argument(help="The model name (e.g. fraud).")],
    strategy: Annotated[str | None, typer.Option(
        "--strategy", help="single, canary, ab or shadow.")] = None,
    primary: Annotated[str | None, typer.Option(
        "--primary", help="The ref that answers by default (e.g. fraud@champion).")] = None,
    candidate: Annotated[str | None, typer.Option(
        "--candidate", help="The ref under trial (canary, ab, shadow).")] = None,
    weight: Annotated[float | None, typer.Option(
        "--weight", help="Percent of requests (canary) or keys (ab) for the candidate; "
                         "default 10.")] = None,
    sticky_key: Annotated[str | None, typer.Option(
        "--sticky-key", help="ab: the header or JSON field whose value assigns a version "
                             "(e.g. x-user-id).")] = None,
    max_error_rate: Annotated[float | None, typer.Option(
        "--max-error-rate", help="Rollback: largest tolerated error rate (default 0.05).")
    ] = None,
    max_p99_ms: Annotated[float | None, typer.Option(
        "--max-p99-ms", help="Rollback: largest tolerated p99 latency (default none).")] = None,
    min_requests: Annotated[int | None, typer.Option(
        "--min-requests", help="Rollback: outcomes needed before judging (default 50).")
    ] = None,
    window_seconds: Annotated[float | None, typer.Option(
        "--window-seconds", help="Rollback: how far back outcomes count (default 60).")
    ] = None,
    no_rollback: Annotated[bool, typer.Option(
        "--no-rollback", help="A canary without automatic rollback.")] = False,
    from_file: Annotated[Path | None, typer.Option(
        "--from", help="Read MODEL's entry of the deploy: section of this shipyard.yaml; "
                       "options given as well override it.")] = None,
    show: Annotated[bool, typer.Option(
        "--show", help="Show the stored deployment and its history; change nothing.")] = False,
    remove: Annotated[bool, typer.Option(
        "--remove", help="Forget the deployment: servers serve the ref they were started "
                         "with.")] = False,
    reason: Annotated[str | None, typer.Option("--reason", "-r",
                                                  help="Why (audit log).")] = None,
) -> None:
    """Store how servers route MODEL; running servers follow within their reload
    interval. A canary rolls back by itself when the candidate's error rate or
    p99 latency crosses its thresholds. Every change goes to the audit log."""
    from shipyard.errors import ConfigError
    from shipyard.deploy import Deployments

    deployments = Deployments(open_workspace())
    if show:
        _show(deployments, model)
        return
    if remove:
        removed = deployments.remove(model, reason=reason)
        console.print(f"removed the deployment of {model}" if removed
                      else f"{model} had no deployment")
        return
    spec: dict[str, Any] = _from_file(from_file, model) if from_file is not None else {}
    flags = {"strategy": strategy, "primary": primary, "candidate": candidate,
             "weight": weight, "sticky_key": sticky_key}
    spec.update({k: v for k, v in flags.items() if v is not None})
    thresholds = {"max_error_rate": max_error_rate, "max_p99_ms": max_p99_ms,
                  "min_requests": min_requests, "window_seconds": window_seconds}
    thresholds = {k: v for k, v in thresholds.items() if v is not None}
    if no_rollback:
        spec["rollback"] = None
    elif thresholds:
        spec["rollback"] = {**(spec.get("rollback") or {}), **thresholds}
    if "primary" not in spec:
        raise ConfigError(f"no deployment given for {model}",
                          hint="pass --strategy and --primary (and --candidate), or --from "
                               "shipyard.yaml; --show shows the current one")
    spec.setdefault("strategy", "single")
    record = deployments.set(model, spec, reason=reason)
    console.print(f"{model}: {record.deployment.describe()} (revision {record.revision})")
    if record.deployment.rollback is not None:
        console.print(f"automatic rollback: {_policy(record.deployment.rollback)}")


def _from_file(path: Path, model: str) -> dict[str, Any]:
    from shipyard.errors import ConfigError
    from shipyard.project import load_section

    section, _ = load_section(path, "deploy")
    section = section or {}
    if model not in section:
        known = ", ".join(section) or "(none)"
        raise ConfigError(f"{path} has no deploy.{model} entry (entries: {known})")
    return section[model].model_dump(mode="json", exclude_unset=True)


def _policy(policy) -> str:
    p99 = f"p99 > {policy.max_p99_ms:g} ms or " if policy.max_p99_ms is not None else ""
    return (f"{p99}error rate > {policy.max_error_rate:g}, after {policy.min_requests} "
            f"requests in {policy.window_seconds:g} s")


def _show(deployments, model: str) -> None:
    from rich.markup import escape
    from rich.table import Table

    record = deployments.get(model)
    if record is None:
        console.print(f"{model} has no deployment: servers serve the ref they were started with")
    else:
        d = record.deployment
        table = Table(show_header=False, box=None, title=f"deployment of {model}")
        table.add_column("what", style="bold")
        table.add_column("value")
        for key, value in (("strategy", d.strategy), ("primary", d.primary),
                           ("candidate", d.candidate), ("weight", d.weight),
                           ("sticky key", d.sticky_key),
                           ("rollback", _policy(d.rollback) if d.rollback else None),
                           ("revision", record.revision),
                           ("updated", f"{fmt_time(record.updated_at)} by {record.updated_by}"),
                           ("reason", record.reason)):
            if value is not None:
                table.add_row(key, escape(str(value)))
        console.print(table)
    history = deployments.history(model, limit=10)
    if history:
        table = Table(title="history (newest 10)")
        for col in ("seq", "when", "action", "actor", "reason"):
            table.add_column(col)
        for e in history:
            table.add_row(str(e.seq), fmt_time(e.ts), e.action, escape(e.actor),
                          escape(e.reason or ""))
        console.print(table)
