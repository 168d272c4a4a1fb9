"""`shipyard serve` and `shipyard keys ...` (create, list, revoke)."""

from __future__ import annotations

import datetime as _dt
from typing import Annotated

import typer

from shipyard.cli._common import (console, err_console, fmt_when, json_option, open_workspace,
                                  print_json, record)
from shipyard.cli._tables import Col, choose, columns_option, print_table


def serve_command(
    models: Annotated[list[str] | None, typer.Argument(
        help="Model refs to serve, one per model name: fraud@champion, fraud@7, fraud. "
             "Optional with --rag.")] = None,
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
    ui: Annotated[bool, typer.Option(
        "--ui", help="Also serve the web UI under /ui on the same port, with the same API "
                     "keys (needs --workers 1).")] = False,
    rag: Annotated[list[str] | None, typer.Option(
        "--rag", help="A RAG collection (docs, docs@2) the OpenAI-compatible "
                      "/v1/chat/completions answers from, as model 'docs'; repeat for "
                      "several.")] = None,
    generator: Annotated[str | None, typer.Option(
        "--generator", metavar="SPEC",
        help="Who writes /v1/chat/completions answers: extractive (offline quotes, the "
             "default), local (the bundled SmolLM2-135M in-process), local:PATH.gguf, or "
             "openai:MODEL (an OpenAI-compatible endpoint at $OPENAI_BASE_URL).")] = None,
) -> None:
    """Serve registered models over HTTP: Shipyard's JSON API (/v1), the Open
    Inference Protocol (/v2) and MLflow's scoring protocol (/invocations);
    and an OpenAI-compatible API (/v1/models, /v1/embeddings,
    /v1/chat/completions over --rag collections).

    Every endpoint but the health checks needs an API key (`shipyard keys
    create`), sent as 'Authorization: Bearer <key>' or 'X-API-Key'."""
    from shipyard.errors import ConfigError
    from shipyard.serve import run

    if (ssl_keyfile is None) != (ssl_certfile is None):
        raise ConfigError("TLS needs both --ssl-keyfile and --ssl-certfile")
    if ui and workers > 1:
        raise ConfigError("--ui needs --workers 1: UI logins live in one process",
                          hint="run `shipyard ui` beside a multi-worker server instead")
    models, rag = list(models or []), list(rag or [])
    if not models and not rag:
        raise ConfigError("nothing to serve", hint="name model refs (shipyard serve "
                                                   "fraud@champion) and/or --rag COLLECTION")
    if generator is not None and not rag:
        raise ConfigError("--generator writes chat answers, which need --rag COLLECTION",
                          hint="shipyard serve --rag docs --generator local")
    ws = open_workspace()
    for ref in models:  # fail before binding the port
        version = ws.models.get(ref)
        console.print(f"serving {ref} → {version.ref}")
    for ref in rag:
        collection = ws.rag.get(ref)
        console.print(f"serving RAG collection {ref} → {collection.ref} "
                      f"(OpenAI-compatible at /v1)")
    if generator is not None:
        from shipyard.genai import generator_from_spec

        writer = generator_from_spec(generator)  # a bad spec fails before binding the port
        console.print(f"chat answers written by {writer.name if writer else 'extractive'}")
    if no_auth:
        err_console.print("[bold red]WARNING: --no-auth: anyone who can reach "
                          f"{host}:{port} can use this server.[/]")
    scheme = "https" if ssl_certfile else "http"
    console.print(f"listening on {scheme}://{host}:{port} (docs at /docs)")
    mounts = None
    if ui:
        from shipyard.ui import create_ui_app

        mounts = {"/ui": create_ui_app(ws, auth=not no_auth)}
        console.print(f"web UI at {scheme}://{host}:{port}/ui/")
    run(ws, list(models), host=host, port=port, workers=workers, ssl_keyfile=ssl_keyfile,
        ssl_certfile=ssl_certfile, auth=not no_auth, max_body_bytes=max_body_bytes,
        max_rows=max_rows, reload_interval=reload_interval,
        prediction_log=not no_prediction_log, onnx=not no_onnx, batching=not no_batching,
        **({"mounts": mounts} if mounts else {}), **({"rag": rag} if rag else {}),
        **({"generator": generator} if generator else {}))


keys_app = typer.Typer(
    help="API keys of the prediction server. Scopes: predict (inference, explanations, "
         "feedback), metrics (/metrics) and admin (everything). Creation and revocation are "
         "recorded in the audit log.",
    no_args_is_help=True,
)


def _key_status(k) -> str:
    return "revoked" if k.revoked_at else "expired" if k.expired() else "active"


def _key_json(k, **extra: object) -> dict:
    return record(k, status=_key_status(k), **extra)


STATUS_STYLE = {"revoked": "dim", "expired": "red", "active": "green"}


def _escape(text: object) -> str:
    from rich.markup import escape

    return escape(str(text))


KEY_COLUMNS = {col.name: col for col in (
    Col("id", lambda k: k.key_id, whole=True),
    Col("name", lambda k: _escape(k.name)),
    Col("scopes", lambda k: ", ".join(k.scopes)),
    Col("rate_limit", lambda k: str(k.rate_limit_per_minute or "-"), header="rate/min",
        justify="right", whole=True),
    Col("created", lambda k: fmt_when(k.created_at), whole=True),
    Col("by", lambda k: _escape(k.created_by)),
    Col("expires", lambda k: fmt_when(k.expires_at), whole=True),
    Col("status", lambda k: f"[{STATUS_STYLE[_key_status(k)]}]{_key_status(k)}[/]",
        whole=True),
)}
KEY_DEFAULT = ("id", "name", "scopes", "expires", "status")


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
    as_json: Annotated[bool, json_option(
        "Print the key (id, name, scopes, limits) and its `secret` as JSON.")] = False,
) -> None:
    """Create a key and print its secret (shown only this once).

    The secret alone goes to stdout, the rest to stderr, so
    `KEY=$(shipyard keys create NAME)` captures just the secret."""
    expires = (_dt.datetime.now(_dt.UTC) + _dt.timedelta(days=expires_in_days)
               if expires_in_days is not None else None)
    keys = open_workspace().keys
    key_id, secret = keys.create(name, scope or ["predict"], expires_at=expires,
                                 rate_limit_per_minute=rate_limit, reason=reason)
    if as_json:
        print_json(_key_json(keys.get(key_id), secret=secret))
        return
    err_console.print(f"created key {key_id}; its secret, shown only now:")
    typer.echo(secret)


@keys_app.command("list")
def list_keys(
    active: Annotated[bool, typer.Option("--active", help="Hide revoked keys.")] = False,
    columns: Annotated[str | None, columns_option(KEY_COLUMNS, KEY_DEFAULT)] = None,
    as_json: Annotated[bool, json_option("Print the keys as a JSON list.")] = False,
) -> None:
    """List keys (never their secrets)."""
    keys = open_workspace().keys.list(include_revoked=not active)
    if as_json:
        print_json([_key_json(k) for k in keys])
        return
    cols, explicit = choose(columns, KEY_COLUMNS, KEY_DEFAULT)
    if not keys:
        console.print("no API keys yet (create one with `shipyard keys create NAME`)")
        return
    print_table(console, keys, cols,
                title=f"{len(keys)} API key{'s' if len(keys) != 1 else ''}",
                optional=("expires", "scopes"), explicit=explicit)


@keys_app.command("revoke")
def revoke_key(
    key_id: Annotated[str, typer.Argument(help="The key id (from `shipyard keys list`).")],
    reason: Annotated[str | None, typer.Option("--reason", "-r",
                                                  help="Why (audit log).")] = None,
    as_json: Annotated[bool, json_option("Print the revoked key as JSON.")] = False,
) -> None:
    """Revoke a key; running servers refuse it within their key cache time (5 s)."""
    info = open_workspace().keys.revoke(key_id, reason=reason)
    if as_json:
        print_json(_key_json(info))
        return
    console.print(f"revoked key {info.key_id} ({_escape(info.name)})")
