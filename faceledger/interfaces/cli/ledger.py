"""`faceledger ledger keygen|sign-heads|heads|verify|export` and `faceledger review`."""

from __future__ import annotations

import getpass
import json
import sys
import time
from pathlib import Path
from typing import Optional

import typer

from faceledger.interfaces.cli.common import EXIT_NEGATIVE, JsonOpt, errors, out
from faceledger.errors import InvalidParameterError
from faceledger.settings import Settings

ledger_app = typer.Typer(no_args_is_help=True, help="The hash-chained record of every request.")
review_app = typer.Typer(no_args_is_help=True, help="Human review of identification candidates.")
policy_app = typer.Typer(no_args_is_help=True, help="The policy in force (shared by every replica through the database).")


def _ledger(settings: Settings, create: bool = True):
    from faceledger.governance.app import ledger_of

    return ledger_of(settings, create=create)


def _public_key(settings: Settings, option: str | None) -> str | None:
    from faceledger.governance.ledger import public_key_hex

    spec = option or settings.ledger_public_key
    return public_key_hex(spec) if spec else None


@ledger_app.command("keygen")
def keygen(
    key_out: Optional[Path] = typer.Option(None, "--out", help="Where to write the private key (default: the "
                                           "ledger_key setting). Run this as the signer, not as the service."),
    as_json: bool = JsonOpt,
) -> None:
    """Make the signer's Ed25519 key pair: the private key (mode 600) for `ledger sign-heads`, the
    public key for the service's ledger_public_key setting and for whoever verifies."""
    from faceledger.governance.ledger import Signer

    with errors(as_json):
        path = key_out or Settings.load().ledger_key
        signer = Signer.generate(path)
        path.with_name(path.name + ".pub").write_text(signer.public_hex + "\n")
        if as_json:
            print(json.dumps({"path": str(path), "public_key": signer.public_hex, "key_id": signer.key_id}))
        else:
            out.print(f"wrote {path} (mode 600) and {path.name}.pub\npublic key {signer.public_hex}\n"
                      "[dim]Set ledger_public_key to it where the service and verifiers run, keep a copy apart from "
                      "the host, and keep the private key away from the service (docs/ledger.md).[/]", soft_wrap=True)


@ledger_app.command("sign-heads")
def sign_heads(
    key: Optional[Path] = typer.Option(None, "--key", help="The signer's private key (default: the ledger_key setting)."),
    watch: bool = typer.Option(False, "--watch", help="Keep running: sign heads as entries arrive, until interrupted."),
    every_entries: Optional[int] = typer.Option(None, "--every-entries", help="A head at least every N entries "
                                                "(default: the ledger_head_entries setting)."),
    every_seconds: Optional[int] = typer.Option(None, "--every-seconds", help="And every T seconds when entries "
                                                "are waiting (default: the ledger_head_seconds setting)."),
    poll: float = typer.Option(1.0, "--poll", help="With --watch: seconds between looks at the ledger."),
    as_json: bool = JsonOpt,
) -> None:
    """Verify the ledger, then sign its heads into the heads file (a separate process holding the
    private key; the service cannot sign). It keeps its own copy of what it signed beside the key
    (KEY.signed/) and checks it as a witness. Refuses, exit 1, when the ledger does not verify."""
    from faceledger.governance.ledger import HeadLog, HeadSigner, Signer, TamperedError

    settings = Settings.load()
    problems = []
    with errors(as_json):
        signer = Signer.load(key or settings.ledger_key)
        configured = _public_key(settings, None)
        if configured and configured != signer.public_hex:
            raise InvalidParameterError(f"this key's public half ({signer.key_id}) is not the ledger_public_key "
                                        "setting: heads signed with it would not verify")
        try:
            key_path = Path(key or settings.ledger_key)
            hs = HeadSigner(_ledger(settings, create=False), HeadLog(settings.heads_dir), signer,
                            every_entries or settings.ledger_head_entries, every_seconds or settings.ledger_head_seconds,
                            memory=key_path.with_name(key_path.name + ".signed"))
            if watch:
                out.print(f"signing heads of {hs.ledger.where} into {hs.log.heads_path} (Ctrl-C stops)")
                while True:
                    for h in hs.round():
                        print(json.dumps({"seq": h.seq, "hash": h.hash})) if as_json else out.print(f"signed head {h.seq}")
                    time.sleep(max(0.05, min(poll, hs.every_seconds)))
            hs.round(force=True)
        except TamperedError as exc:
            problems = exc.problems
        if not problems:
            last = hs.last_head.seq if hs.last_head else 0
            if as_json:
                print(json.dumps({"signed": [h.seq for h in hs.signed], "last_head": last}))
            else:
                out.print(f"signed {len(hs.signed)} head(s); the last head covers entry {last}")
    if problems:
        _print_problems(problems, as_json, "no head signed: ")
        raise typer.Exit(EXIT_NEGATIVE)


@ledger_app.command("heads")
def heads(
    export: bool = typer.Option(False, "--export", help="Print every signed head as JSON Lines, for a remote "
                                "witness to pin (verify --witness FILE compares with such a copy)."),
    out_path: Optional[Path] = typer.Option(None, "--out", help="With --export: the file to write."),
    as_json: bool = JsonOpt,
) -> None:
    """The signed heads: how many, the last, and (--export) all of them."""
    from faceledger.governance.ledger import HeadLog

    with errors(as_json):
        log_ = HeadLog(Settings.load().heads_dir)
        found, bad = log_.read_heads()
        if export:
            text = "".join(h.line() + "\n" for h in found)
            if out_path:
                out_path.write_text(text)
            else:
                sys.stdout.write(text)
            return
        last = found[-1] if found else None
        info = {"heads_file": str(log_.heads_path), "heads": len(found), "unreadable_lines": len(bad),
                "last": {"seq": last.seq, "hash": last.hash, "time": last.time, "key_id": last.key_id} if last else None}
        if as_json:
            print(json.dumps(info, indent=2))
        else:
            out.print(f"{len(found)} signed head(s) in {log_.heads_path}" +
                      (f"; the last covers entry {last.seq} ({last.time}, key {last.key_id})" if last else ""))


def _print_problems(problems, as_json: bool, prefix: str = "") -> None:
    if as_json:
        print(json.dumps({"intact": False, "problems": [p.__dict__ for p in problems]}, indent=2))
        return
    first = problems[0]
    state = "not signed" if first.kind == "unsigned" else "broken"  # a fresh ledger is unsigned, not tampered with
    out.print(f"[red]{prefix}ledger {state}[/]: first bad entry {first.seq} ({first.kind}): {first.detail}", soft_wrap=True)
    for p in problems[1:10]:
        out.print(f"  entry {p.seq} ({p.kind}): {p.detail}", soft_wrap=True)


@ledger_app.command("verify")
def verify(
    public_key: Optional[str] = typer.Option(None, "--public-key", help="The signer's Ed25519 public key (64 hex "
                                             "digits or a file) heads must be signed with (default: the "
                                             "ledger_public_key setting). Pass one kept apart from the host."),
    witness: Optional[Path] = typer.Option(None, "--witness", help="A copy of the heads pinned elsewhere "
                                           "(`ledger heads --export`): every head in it must still be there and hold."),
    as_json: bool = JsonOpt,
) -> None:
    """Recompute the chain and check it against every signed head, the published tips and (--witness)
    a pinned copy of the heads. Exit 0 when intact, 1 naming the first problem. Never creates a ledger."""
    from faceledger.governance.ledger import HeadLog, parse_heads, verify_ledger

    with errors(as_json):
        settings = Settings.load()
        pinned = None
        if witness is not None:
            pinned, unreadable = parse_heads(witness.read_text(), str(witness))
            if unreadable:
                raise InvalidParameterError(f"{witness}: {unreadable[0].detail}")
        report = verify_ledger(_ledger(settings, create=False), HeadLog(settings.heads_dir),
                               _public_key(settings, public_key), pinned)
        if report.problems:
            _print_problems(report.problems, as_json)
        elif as_json:
            print(json.dumps({"entries": report.entries, "intact": True, "heads": report.heads,
                              "last_head": report.last_head, "unsigned": report.unsigned, "problems": []}, indent=2))
        else:
            out.print(f"ledger intact: {report.entries:,} entries chain, {report.heads} signed head(s) hold "
                      f"(the last covers entry {report.last_head}; {report.unsigned} entries after it await a head)",
                      soft_wrap=True)
    if report.problems:
        raise typer.Exit(EXIT_NEGATIVE)


@ledger_app.command("export")
def export(
    since: Optional[str] = typer.Option(None, "--since", help="ISO 8601 date or time, or seconds ago as 3600s."),
    out_path: Optional[Path] = typer.Option(None, "--out", help="File to write (default: standard output)."),
) -> None:
    """The entries as JSON Lines: seq, hash and body, in chain order."""
    from faceledger.governance.ledger import since_time

    with errors(False):
        ledger = _ledger(Settings.load(), create=False)
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


@review_app.command("queue")
def queue(
    case: Optional[str] = typer.Option(None, "--case", help="Only this case reference's searches."),
    purpose: Optional[str] = typer.Option(None, "--purpose", help="Only searches for this purpose."),
    as_json: bool = JsonOpt,
) -> None:
    """Searches whose candidates await a decision, newest first (the console's queue, docs/console.md)."""
    from faceledger.governance.console import Console
    from faceledger.governance.keys import open_keys

    with errors(as_json):
        gate, ctx = _gate_ctx()
        settings = Settings.load()
        page = Console(gate, open_keys(settings), settings).queue(ctx, case=case, purpose=purpose)
        if as_json:
            print(json.dumps({"open": page.open_total, "items": [i.__dict__ for i in page.items]}, indent=2))
            return
        out.print(f"{page.open_total} search(es) await review (newest first; `faceledger review show ENTRY`):")
        for i in page.items:
            out.print(f"  entry {i.seq} at {i.time[:19]}: {i.undecided} of {i.candidates} candidate(s) undecided; "
                      f"case {i.case_reference!r}, purpose {i.purpose!r}, searched by {i.principal}", soft_wrap=True)


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
            fmr = c.get("false_match_rate")
            out.print(f"  candidate {c['id']}: similarity {c['similarity']:.1f}, false match rate "
                      f"{'-' if fmr is None else format(fmr, '.1e')}", soft_wrap=True)
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
