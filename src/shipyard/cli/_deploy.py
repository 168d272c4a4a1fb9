"""``shipyard deploy MODEL``: store how servers route a model (single, canary,
A/B, shadow), or ``--show`` it with its history."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from shipyard.cli._common import console, fmt_time, fmt_when, open_workspace, print_json, record
from shipyard.cli._tables import fit


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
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the stored deployment as JSON (with --show, also its history; "
                       "with --remove, whether there was one).")] = False,
) -> None:
    """Store how servers route MODEL; running servers follow within their reload
    interval. A canary rolls back by itself when the candidate's error rate or
    p99 latency crosses its thresholds. Every change goes to the audit log."""
    from shipyard.errors import ConfigError

    deployments = open_workspace().deployments
    if show:
        _show(deployments, model, as_json)
        return
    if remove:
        removed = deployments.remove(model, reason=reason)
        if as_json:
            print_json({"model": model, "removed": bool(removed)})
            return
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
    stored = deployments.set(model, spec, reason=reason)
    if as_json:
        print_json(_record_json(stored))
        return
    console.print(f"{model}: {stored.deployment.describe()} (revision {stored.revision})")
    if stored.deployment.rollback is not None:
        console.print(f"automatic rollback: {_policy(stored.deployment.rollback)}")


def _record_json(stored) -> dict[str, Any]:
    return record(stored, description=stored.deployment.describe())


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


def _show(deployments, model: str, as_json: bool) -> None:
    from rich.markup import escape
    from rich.table import Table

    stored = deployments.get(model)
    history = deployments.history(model, limit=10)
    if as_json:
        print_json({"model": model,
                    "deployment": _record_json(stored) if stored is not None else None,
                    "history": [record(e, object=e.object) for e in history]})
        return
    if stored is None:
        console.print(f"{model} has no deployment: servers serve the ref they were started with")
    else:
        d = stored.deployment
        table = Table(show_header=False, box=None, title=f"deployment of {model}")
        table.add_column("what", style="bold", no_wrap=True)
        table.add_column("value")
        for key, value in (("strategy", d.strategy), ("primary", d.primary),
                           ("candidate", d.candidate), ("weight", d.weight),
                           ("sticky key", d.sticky_key),
                           ("rollback", _policy(d.rollback) if d.rollback else None),
                           ("revision", stored.revision),
                           ("updated", f"{fmt_time(stored.updated_at)} by {stored.updated_by}"),
                           ("reason", stored.reason)):
            if value is not None:
                table.add_row(key, escape(str(value)))
        fit(table, console)
        console.print(table)
    if history:
        table = Table(title="history (newest 10)")
        for col in ("seq", "when", "action", "actor", "reason"):
            table.add_column(col, no_wrap=col in ("seq", "when"))
        for e in history:
            table.add_row(str(e.seq), fmt_when(e.ts), e.action, escape(e.actor),
                          escape(e.reason or ""))
        fit(table, console)
        console.print(table)
