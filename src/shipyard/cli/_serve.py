"""`shipyard serve` and `shipyard keys ...` (create, list, revoke)."""

from __future__ import annotations

import datetime as _dt
from typing import Annotated

import typer

from shipyard.cli._common import console, err_console, fmt_time, open_workspace


def serve_command(
    models: Annotated[list[str], typer.Argument(
        help="Model refs to serve, one per model name: fraud@champion, fraud@7, fraud.")],
    host: Annotated[str, typer.Option(help="Interface to bind (0.0.0.0 for all).")
                    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    no_auth: Annotated[bool, typer.Option(
        "--no-auth", help="Serve without API keys: for local use on a trusted machine only.")
    ] = False,
    ssl_keyfile: Annotated[str | None, typer.Option(
        help="TLS private key (PEM); with --ssl-certfile serves HTTPS (uvicorn's TLS).")
    ] = None,
    ssl_certfile: Annotated[str | None, typer.Option(
        help="TLS certificate chain (PEM).")] = None,
    max_body_bytes: Annotated[int, typer.Option(
        min=1, help="Refuse larger request bodies with 413.")] = 10 * 1024 * 1024,
    max_rows: Annotated[int, typer.Option(min=1, help="Most rows in one request.")] = 10_000,
    reload_interval: Annotated[float, typer.Option(
        min=0, help="Seconds between checks that each alias still points at the loaded "
                    "version (0: never; POST /v1/admin/reload reloads on demand).")] = 10.0,
    no_prediction_log: Annotated[bool, typer.Option(
        "--no-prediction-log", help="Do not log requests under <home>/predictions.")
    ] = False,
    no_onnx: Annotated[bool, typer.Option(
        "--no-onnx", help="Predict with the Python model even where a version has a "
                          "verified ONNX graph.")] = False,
    no_batching: Annotated[bool, typer.Option(
        "--no-batching", help="Predict each request alone instead of merging concurrent "
                              "requests to the same version.")] = False,
) -> None:
    """Serve registered models over HTTP: Shipyard's JSON API (/v1), the Open
    Inference Protocol (/v2) and MLflow's scoring protocol (/invocations).

    Every endpoint but the health checks needs an API key (`shipyard keys
    create`), sent as 'Authorization: Bearer <key>' or 'X-API-Key'."""
    from shipyard.errors import ConfigError
    from shipyard.serve import run

    if (ssl_keyfile is None) != (ssl_certfile is None):
        raise ConfigError("TLS needs both --ssl-keyfile and --ssl-certfile")
    ws = open_workspace()
    for ref in models:  # fail before binding the port
        version = ws.models.get(ref)
        console.print(f"serving {ref} → {version.ref}")
    if no_auth:
        err_console.print("[bold red]WARNING: --no-auth: anyone who can reach "
                          f"{host}:{port} can use this server.[/]")
    scheme = "https" if ssl_certfile else "http"
    console.print(f"listening on {scheme}://{host}:{port} (docs at /docs)")
    run(ws, list(models), host=host, port=port, workers=workers, ssl_keyfile=ssl_keyfile,
        ssl_certfile=ssl_certfile, auth=not no_auth, max_body_bytes=max_body_bytes,
        max_rows=max_rows, reload_interval=reload_interval,
        prediction_log=not no_prediction_log, onnx=not no_onnx, batching=not no_batching)


keys_app = typer.Typer(
    help="API keys of the prediction server. Scopes: predict (inference, explanations, "
         "feedback), metrics (/metrics) and admin (everything). Creation and revocation are "
         "recorded in the audit log.",
    no_args_is_help=True,
)


@keys_app.command("create")
def create_key(
    name: Annotated[str, typer.Argument(help="What the key is for.")],
    scope: Annotated[list[str] | None, typer.Option(
        "--scope", "-s", help="predict, metrics or admin; repeat for several "
                              "(default predict).")] = None,
    rate_limit: Annotated[int | None, typer.Option(
        "--rate-limit", min=1, help="Requests a minute, per server process.")] = None,
    expires_in_days: Annotated[float | None, typer.Option(
        "--expires-in-days", min=0, help="Stop working after this many days.")] = None,
    reason: Annotated[str | None, typer.Option("--reason", "-r",
                                                  help="Why (audit log).")] = None,
) -> None:
    """Create a key and print its secret (shown only this once)."""
    from shipyard.security import ApiKeys

    expires = (_dt.datetime.now(_dt.UTC) + _dt.timedelta(days=expires_in_days)
               if expires_in_days is not None else None)
    key_id, secret = ApiKeys(open_workspace()).create(
        name, scope or ["predict"], expires_at=expires, rate_limit_per_minute=rate_limit,
        reason=reason)
    err_console.print(f"created key {key_id}; its secret, shown only now:")
    typer.echo(secret)


@keys_app.command("list")
def list_keys(
    active: Annotated[bool, typer.Option("--active", help="Hide revoked keys.")] = False,
) -> None:
    """List keys (never their secrets)."""
    from rich.markup import escape
    from rich.table import Table

    from shipyard.security import ApiKeys

    keys = ApiKeys(open_workspace()).list(include_revoked=not active)
    if not keys:
        console.print("no API keys yet (create one with `shipyard keys create NAME`)")
        return
    table = Table(title=f"{len(keys)} API key{'s' if len(keys) != 1 else ''}")
    for col in ("id", "name", "scopes", "rate/min", "created", "expires", "status"):
        table.add_column(col)
    for k in keys:
        status = ("[dim]revoked[/]" if k.revoked_at else
                  "[red]expired[/]" if k.expired() else "[green]active[/]")
        table.add_row(k.key_id, escape(k.name), ", ".join(k.scopes),
                      str(k.rate_limit_per_minute or "-"), fmt_time(k.created_at),
                      fmt_time(k.expires_at), status)
    console.print(table)


@keys_app.command("revoke")
def revoke_key(
    key_id: Annotated[str, typer.Argument(help="The key id (from `shipyard keys list`).")],
    reason: Annotated[str | None, typer.Option("--reason", "-r",
                                                  help="Why (audit log).")] = None,
) -> None:
    """Revoke a key; running servers refuse it within their key cache time (5 s)."""
    from shipyard.security import ApiKeys

    info = ApiKeys(open_workspace()).revoke(key_id, reason=reason)
    console.print(f"revoked key {info.key_id} ({info.name})")
