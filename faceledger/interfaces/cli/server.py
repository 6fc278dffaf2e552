"""`faceledger serve` and `faceledger keys`: the HTTP service and its access keys."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from typing import Optional

import typer
from rich.table import Table

from faceledger.interfaces.cli.common import JsonOpt, errors, out
from faceledger.governance.keys import default_roles, new_account, open_keys
from faceledger.service.scope import DEFAULT_ACCOUNT
from faceledger.settings import Settings

keys_app = typer.Typer(no_args_is_help=True, help="Access keys for the HTTP service (AWS Signature Version 4).")


def _keys():
    return open_keys(Settings.load())


@keys_app.command("create")
def keys_create(
    description: str = typer.Option("", "--description"),
    principal: Optional[str] = typer.Option(None, "--principal", help="Who acts with this key (default: its id)."),
    role: list[str] = typer.Option([], "--role", help="Role(s) the policy grants operations to (default: user; "
                                   "with --purpose: user and investigator, so the key can enrol and search)."),
    purpose: list[str] = typer.Option([], "--purpose", help="Purpose(s) this key may identify for; with exactly one, "
                                      "requests state it by default (access-control needs no case reference)."),
    case: str = typer.Option("", "--case", help="A standing case reference requests state unless they send "
                             "X-Faceledger-Case (for purposes whose identifications need a case)."),
    account: str = typer.Option(DEFAULT_ACCOUNT, "--account", help="The account (tenant, 12 digits) the key belongs "
                                "to: it sees only that account's collections. `new`: a new account."),
    as_json: bool = JsonOpt,
) -> None:
    """Make a key. The secret is shown once; the key file is readable only by you."""
    with errors(as_json):
        store = _keys()
        if account == "new":
            account = new_account()
        roles = tuple(role) or default_roles(purpose)
        key, secret = store.create(description, principal=principal, roles=roles, purposes=tuple(purpose),
                                   account=account, case=case)
        if as_json:
            print(json.dumps({"AccessKeyId": key.access_key_id, "SecretAccessKey": secret, "Principal": key.principal,
                              "Roles": list(key.roles), "Purposes": list(key.purposes), "Account": key.account,
                              "Case": key.case or None}))
        else:
            out.print(f"AccessKeyId     {key.access_key_id}\nSecretAccessKey {secret}")
            out.print(f"principal {key.principal}, account {key.account}, roles {', '.join(key.roles)}, "
                      f"purposes {', '.join(key.purposes) or 'none'}" + (f", standing case {key.case}" if key.case else ""))
            out.print(f"[dim]stored in {store.path} (mode 600); the secret is not shown again[/]")


@keys_app.command("list")
def keys_list(as_json: bool = JsonOpt) -> None:
    with errors(as_json):
        keys = _keys().list()
        if as_json:
            print(json.dumps([{"AccessKeyId": k.access_key_id, "Created": k.created, "Revoked": k.revoked,
                               "Description": k.description, "Account": k.account} for k in keys], indent=2))
            return
        table = Table("access key", "created", "status", "description", title="access keys", title_justify="left")
        for k in keys:
            when = lambda t: datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")  # noqa: E731
            table.add_row(k.access_key_id, when(k.created), f"revoked {when(k.revoked)}" if k.revoked else "active", k.description)
        out.print(table)


@keys_app.command("revoke")
def keys_revoke(access_key_id: str, as_json: bool = JsonOpt) -> None:
    """Revoke a key: requests signed with it are refused from now on."""
    with errors(as_json):
        _keys().revoke(access_key_id)
        print(json.dumps({"Revoked": access_key_id})) if as_json else out.print(f"revoked {access_key_id}")


def serve(
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8080, "--port"),
    workers: int = typer.Option(1, "--workers", help="Worker processes, each with its own engine."),
    auth: Optional[str] = typer.Option(None, "--auth", help="sigv4 (default) or none (local testing only)."),
) -> None:
    """Serve the Rekognition-compatible API at / and the native API at /v1/ (OpenAPI: /v1/openapi.json)."""
    import uvicorn

    if auth:
        os.environ["FACELEDGER_AUTH"] = auth  # the workers read their settings from the environment
    # each worker sizes its thread pools for its share of the cores (settings `threads`, 0: automatic)
    from faceledger.models.threads import WORKERS_ENV

    os.environ[WORKERS_ENV] = str(workers)
    settings = Settings.load()
    out.print(f"faceledger on http://{host}:{port} (auth {settings.auth}, region {settings.region}, store {settings.store})"
              f"; the review console at http://{host}:{port}/console, the REST API's docs at /v1/docs", soft_wrap=True)
    from faceledger.interfaces.http.protocol import NoDelayH11Protocol

    uvicorn.run("faceledger.interfaces.http.asgi:app", host=host, port=port, workers=workers, log_level="info", http=NoDelayH11Protocol)
