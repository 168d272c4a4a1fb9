"""`shipyard ui`: the web UI of the workspace."""

from __future__ import annotations

from typing import Annotated

import typer

from shipyard.cli._common import console, err_console, open_workspace


def ui_command(
    host: Annotated[str, typer.Option(help="Interface to bind (0.0.0.0 for all).")
                    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8090,
    no_auth: Annotated[bool, typer.Option(
        "--no-auth", help="No login: everyone who can reach the port is an admin. For a "
                          "trusted machine only.")] = False,
) -> None:
    """Browse runs, datasets, models, deployments, monitoring, RAG traces and the
    audit log in a browser (`shipyard serve MODEL --ui` serves the same pages
    under /ui of the prediction server).

    Log in with an API key of the workspace (`shipyard keys create NAME`): any
    key can read; only an admin key can move or roll back aliases."""
    from shipyard.ui import run

    ws = open_workspace()
    if no_auth:
        err_console.print("[bold red]WARNING: --no-auth: anyone who can reach "
                          f"{host}:{port} can change this workspace.[/]")
    elif not any(k.active for k in ws.keys.list()):
        err_console.print("no active API key: create one to log in, e.g. "
                          "`shipyard keys create me --scope admin`")
    console.print(f"Shipyard UI on http://{host}:{port}/ (Ctrl-C to stop)")
    run(ws, host=host, port=port, auth=not no_auth)
