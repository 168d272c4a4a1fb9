"""``shipyard promote``: check gates, move the alias only if they pass.

Exit status 0 when the alias moved (gates passed, or an override was
given), 1 when a gate failed, so CI pipelines can use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from shipyard.cli._common import (console, json_option, open_workspace, print_json, record,
                                  stdout_reserved)
from shipyard.cli._tables import fit


def promote_command(
    model: Annotated[str, typer.Argument(help="The challenger: MODEL@VERSION (e.g. fraud@3).")],
    dataset: Annotated[str, typer.Option(
        "--dataset", help="Test dataset version both models are scored on (e.g. fraud@2).")],
    to: Annotated[str, typer.Option("--to", help="The alias to move.")] = "champion",
    target: Annotated[Optional[str], typer.Option(
        "--target", help="Target column (default: the policy file's `target`).")] = None,
    policy: Annotated[Path, typer.Option(
        "--policy", help="shipyard.yaml (its gates: section) or a file holding only the "
                         "gates.")] = Path("shipyard.yaml"),
    sensitive: Annotated[Optional[list[str]], typer.Option(
        "--sensitive", help="Sensitive column for fairness gates; repeat for several "
                            "(default: the policy file's features.sensitive).")] = None,
    override: Annotated[Optional[str], typer.Option(
        "--override", help="Promote even if gates fail; this reason and the failed gates "
                           "are audited.")] = None,
    actor: Annotated[Optional[str], typer.Option(
        "--actor", help="Who promotes (default $SHIPYARD_ACTOR or the OS user).")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Move the alias even if the challenger needs input columns the "
                        "current holder does not take (its clients would be refused).")] = False,
    as_json: Annotated[bool, json_option(
        "Print the decision as JSON (promoted, previous, every gate, the challenger's "
        "evaluation report); the exit status is the same.")] = False,
) -> None:
    """Evaluate MODEL@VERSION, check the gates against the current alias holder,
    and move the alias only if every gate passes (or --override is given)."""
    from shipyard.errors import ConfigError
    from shipyard.project import load_section

    gates, defaults = load_section(policy, "gates")
    target = target or defaults.get("target")
    if not target:
        raise ConfigError(f"no target column: pass --target or set `target:` in {policy}")
    if sensitive is None:
        sensitive = list(defaults.get("sensitive") or ())
    with stdout_reserved(as_json):
        result = open_workspace().promote(
            model, to=to, policy=gates, dataset_ref=dataset, target=target,
            sensitive=sensitive, actor=actor, override_reason=override, force=force)
    if as_json:
        print_json({**record(result), "passed": result.passed, "gates": result.gates.to_dict()})
    else:
        print_promotion(result)
    if not result.promoted:
        raise typer.Exit(1)


def print_promotion(result: Any) -> None:
    """Render the gate table and the verdict."""
    from rich.markup import escape
    from rich.table import Table

    if result.already:
        console.print(f"{result.model} already holds {result.alias!r}: nothing to do")
        return
    table = Table(title=f"gates for {result.model} → {result.alias}"
                        + (f" (now {result.previous})" if result.previous else ""))
    for col in ("", "gate", "observed", "threshold", "reason"):
        table.add_column(col, no_wrap=col in ("observed", "threshold"))
    for check in result.gates.checks:
        table.add_row("[green]✓[/]" if check.passed else "[red]✗[/]", check.name,
                      _fmt(check.observed), _fmt(check.threshold), escape(check.reason))
    fit(table, console)
    console.print(table)
    if result.passed:
        console.print(f"[green]promoted[/] {result.model} to {result.alias!r}")
    elif result.overridden:
        console.print(f"[yellow]promoted by override[/] {result.model} to {result.alias!r} "
                      f"despite {len(result.gates.failed)} failed gate(s)")
    else:
        console.print(f"[red]not promoted:[/] {len(result.gates.failed)} gate(s) failed; "
                      f"{result.alias!r} is unchanged")
    if result.audit_seq is not None:
        name = escape(result.model.rpartition("@")[0])
        console.print(f"recorded as audit entry {result.audit_seq}: shipyard audit list "
                      f"--object 'model:{name}' --action model.promote")


def _fmt(value: object) -> str:
    return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)
