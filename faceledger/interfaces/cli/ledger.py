"""`faceledger ledger keygen|verify|export|checkpoint` and `faceledger review`."""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path
from typing import Optional

import typer

from faceledger.interfaces.cli.common import EXIT_NEGATIVE, JsonOpt, errors, out
from faceledger.errors import InvalidParameterError
from faceledger.settings import Settings

ledger_app = typer.Typer(no_args_is_help=True, help="The hash-chained record of every request.")
review_app = typer.Typer(no_args_is_help=True, help="Human review of identification candidates.")
policy_app = typer.Typer(no_args_is_help=True, help="The policy in force (shared by every replica through the database).")


def _ledger(settings: Settings):
    from faceledger.governance.app import ledger_of

    return ledger_of(settings)


@ledger_app.command("keygen")
def keygen(as_json: bool = JsonOpt) -> None:
    """Make the operator's Ed25519 key that signs checkpoints (kept at the ledger_key setting, mode 600)."""
    from faceledger.governance.ledger import Signer

    with errors(as_json):
        path = Settings.load().ledger_key
        signer = Signer.generate(path)
        if as_json:
            print(json.dumps({"path": str(path), "public_key": signer.public_hex, "key_id": signer.key_id}))
        else:
            out.print(f"wrote {path} (mode 600)\npublic key {signer.public_hex}\n"
                      "[dim]Keep a copy of the public key apart from the ledger: verify checks checkpoints against it.[/]")


@ledger_app.command("checkpoint")
def checkpoint(as_json: bool = JsonOpt) -> None:
    """Sign the current end of the chain now (the service also signs every 1,000 entries)."""
    with errors(as_json):
        seq = _ledger(Settings.load()).checkpoint()
        print(json.dumps({"checkpoint": seq})) if as_json else out.print(f"signed checkpoint at entry {seq}")


@ledger_app.command("verify")
def verify(
    public_key: Optional[str] = typer.Option(None, "--public-key", help="Hex Ed25519 public key checkpoints must be "
                                             "signed with (default: that of the ledger_key file)."),
    as_json: bool = JsonOpt,
) -> None:
    """Recompute the chain and the signed checkpoints. Exit 0 when intact, 1 naming the first bad entry."""
    with errors(as_json):
        settings = Settings.load()
        ledger = _ledger(settings)
        key = public_key or (ledger.signer.public_hex if ledger.signer else None)
        count, problems = ledger.verify(key)
        if as_json:
            print(json.dumps({"entries": count, "intact": not problems,
                              "problems": [p.__dict__ for p in problems]}, indent=2))
        elif problems:
            first = problems[0]
            out.print(f"[red]ledger broken[/]: first bad entry {first.seq} ({first.kind}): {first.detail}")
            for p in problems[1:10]:
                out.print(f"  entry {p.seq} ({p.kind}): {p.detail}")
        else:
            out.print(f"ledger intact: {count:,} entries chain and every checkpoint verifies")
    if problems:
        raise typer.Exit(EXIT_NEGATIVE)


@ledger_app.command("export")
def export(
    since: Optional[str] = typer.Option(None, "--since", help="ISO 8601 date or time, or seconds ago as 3600s."),
    out_path: Optional[Path] = typer.Option(None, "--out", help="File to write (default: standard output)."),
) -> None:
    """The entries as JSON Lines: seq, hash and body, in chain order."""
    from faceledger.governance.ledger import since_time

    with errors(False):
        ledger = _ledger(Settings.load())
        start = since_time(since) if since else None
        fh = open(out_path, "w") if out_path else sys.stdout
        try:
            for e in ledger.entries(start):
                fh.write(json.dumps({"seq": e.seq, "hash": e.hash, **e.body}, sort_keys=True) + "\n")
        finally:
            if out_path:
                fh.close()


def _gate_ctx():
    from faceledger.governance.app import open_gate
    from faceledger.governance.policy import Context, Principal

    gate = open_gate(Settings.load())
    return gate, Context(Principal(f"local:{getpass.getuser()}", gate.policy.local_roles, ("*",)), None, None, "cli")


@review_app.command("decide")
def decide(
    entry: int = typer.Argument(..., help="The search's ledger entry (shown with its results)."),
    decision: str = typer.Option(..., "--decision", help="confirmed, rejected or inconclusive."),
    reason: str = typer.Option(..., "--reason", help="Why: what the reviewer compared and saw."),
    face_id: list[str] = typer.Option([], "--face-id", help="The candidate(s) the decision is about (default: all)."),
    as_json: bool = JsonOpt,
) -> None:
    """Record a reviewer's decision on a candidate list, linked to the search's ledger entry."""
    with errors(as_json):
        gate, ctx = _gate_ctx()
        r = gate.review(ctx, entry, decision, reason, face_id)
        if as_json:
            print(json.dumps({"LedgerEntry": r.ledger_entry, "Reviews": r.reviews, "Decision": r.decision}))
        else:
            out.print(f"review recorded as ledger entry {r.ledger_entry}: entry {entry} {decision}")


@review_app.command("show")
def show(entry: int, as_json: bool = JsonOpt) -> None:
    """A search's candidates and every review of them."""
    with errors(as_json):
        gate, _ = _gate_ctx()
        e = gate.ledger.get(entry)
        reviews = gate.reviews_of(entry)
        if as_json:
            print(json.dumps({"entry": e.seq, **e.body, "reviews": reviews}, indent=2))
            return
        b = e.body
        out.print(f"entry {e.seq}: {b.get('operation')} by {b.get('principal')} for {b.get('purpose')!r} "
                  f"(case {b.get('case_reference')!r}) on {b.get('collection')!r} at {b.get('time')}", soft_wrap=True)
        for c in b.get("result", {}).get("candidates", []):
            out.print(f"  candidate {c['id']}: similarity {c['similarity']:.1f}, false match rate {c['false_match_rate']}")
        for r in reviews:
            out.print(f"  review {r['ledger_entry']}: {r['verdict']} by {r['principal']}: {r['reason']}")


@review_app.command("export")
def export_candidates(entry: int, as_json: bool = JsonOpt) -> None:
    """A search's candidates for a case file: refused until a reviewer confirmed them, when the policy says so."""
    with errors(as_json):
        gate, ctx = _gate_ctx()
        r = gate.export_candidates(ctx, entry)
        print(json.dumps({"SearchEntry": r.search_entry, "Candidates": r.candidates, "Reviews": r.reviews,
                          "LedgerEntry": r.ledger_entry}, indent=2))


@policy_app.command("show")
def policy_show(as_json: bool = JsonOpt) -> None:
    """The policy in force: from the shared database when there is one, else the policy setting."""
    from faceledger.governance.policy import Policy

    with errors(as_json):
        settings = Settings.load()
        if settings.database:
            from faceledger.governance.app import shared_database
            from faceledger.governance.policy_store import PolicyStore

            version, policy, origin, _ = PolicyStore(shared_database(settings), settings.policy).newest()
        else:
            version, policy, origin = None, Policy.load(settings.policy), settings.policy
        info = {"name": policy.name, "digest": policy.digest, "origin": origin, "version": version,
                "allowed_purposes": list(policy.allowed_purposes), "denied_purposes": list(policy.denied_purposes),
                "max_false_positive_identification_rate": policy.max_fpir}
        if as_json:
            print(json.dumps(info, indent=2))
        else:
            where = f"version {version} in the shared database" if version else "the policy setting"
            out.print(f"policy [bold]{policy.name}[/] ({where}, from {origin})\ndigest {policy.digest}")
            out.print(f"identification allowed for: {', '.join(policy.allowed_purposes) or 'no purpose'}")


@policy_app.command("set")
def policy_set(spec: str = typer.Argument(..., help="A preset (moratorium, open) or a TOML file."),
               as_json: bool = JsonOpt) -> None:
    """Put a new policy in force on every replica (within 2 s); each records the change in the ledger."""
    with errors(as_json):
        settings = Settings.load()
        if not settings.database:
            raise InvalidParameterError("no shared database: set the policy setting (config file or FACELEDGER_POLICY) "
                                        "and restart the service")
        from faceledger.governance.app import shared_database
        from faceledger.governance.policy_store import PolicyStore

        policy = PolicyStore(shared_database(settings), settings.policy).set(spec)
        if as_json:
            print(json.dumps({"name": policy.name, "digest": policy.digest}))
        else:
            out.print(f"policy {policy.name} ({policy.digest[:16]}...) is in force on every replica within 2 s")
