"""The service as every CLI command sees it: behind the gate. Its own module, so that `compare` and
`detect` reach the gate without importing the collection commands (issue 25: start-up)."""

from __future__ import annotations

from pathlib import Path

from faceledger.settings import Settings


class _Gated:
    """The service as the CLI sees it: every call decided by the policy and written to the
    ledger, as the operating-system user with the policy's local roles."""

    def __init__(self, purpose: str | None = None, case: str | None = None, settings: Settings | None = None) -> None:
        import getpass

        from faceledger.governance.app import open_gate
        from faceledger.governance.policy import Context, Principal

        self.gate = open_gate(settings or Settings.load())
        self.store = self.gate.service.store
        principal = Principal(f"local:{getpass.getuser()}", self.gate.policy.local_roles, ("*",))
        self.ctx = Context(principal, purpose, case, "cli")

    def __getattr__(self, name: str):
        method = getattr(self.gate.service, name)
        operation = "".join(part.capitalize() for part in name.split("_"))

        def call(*args, **kwargs):
            images = [Path(a).read_bytes() for a in args if isinstance(a, Path) and Path(a).is_file()]
            collection = args[0] if args and isinstance(args[0], str) else None
            return self.gate.call(self.ctx, operation, lambda **extra: method(*args, **kwargs, **extra),
                                  collection=collection, images=images)

        return call
