"""Who may do what, for which purpose: the policy every request is decided by.

A policy is a TOML file (docs/policy.md). Identification (1:N search) is purpose-bound: the
request states a purpose, the key must be allowed to act for it, the policy must allow it and
not deny it, and a case reference may be required. The probe must clear a quality floor, and the
search threshold rises with the gallery so that the false positive identification rate stays
under the policy's bound. Presets ship in faceledger/data/policies/; ``moratorium`` (the default)
denies identification for law-enforcement purposes.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from faceledger.errors import InvalidParameterError
from faceledger.service.limits import Limits
from faceledger.vision.quality import QualityFloor

#: 1:N operations: purpose-bound, quality-floored, gallery-aware.
IDENTIFICATION = frozenset({"SearchFaces", "SearchFacesByImage", "SearchUsers", "SearchUsersByImage"})
PRESETS = ("moratorium", "open")


@dataclass(frozen=True)
class Principal:
    """Who is asking: from an access key (HTTP) or the operating-system user (CLI)."""

    name: str
    roles: tuple[str, ...]
    purposes: tuple[str, ...]  # the purposes this principal may act for ("*": any)


@dataclass(frozen=True)
class Context:
    principal: Principal
    purpose: str | None = None
    case_reference: str | None = None
    interface: str = "python"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str


@dataclass(frozen=True)
class Policy:
    name: str
    roles: dict[str, tuple[str, ...]]  # role -> operations ("*": all)
    allowed_purposes: tuple[str, ...]
    denied_purposes: tuple[str, ...]
    require_case_reference: bool
    max_fpir: float
    quality_floor: QualityFloor
    review_required_before_export: bool
    local_roles: tuple[str, ...]
    digest: str = field(default="", compare=False)  # SHA-256 of the file's bytes

    @classmethod
    def parse(cls, text: str, origin: str = "policy") -> "Policy":
        try:
            d = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise InvalidParameterError(f"{origin}: not valid TOML ({exc})") from None
        try:
            ident = d.get("identification", {})
            floor = QualityFloor(**{k: float(v) for k, v in ident.get("quality_floor", {}).items()})
            policy = cls(
                name=str(d["name"]),
                roles={str(r): tuple(v.get("operations", ())) for r, v in d.get("roles", {}).items()},
                allowed_purposes=tuple(ident.get("allowed_purposes", ())),
                denied_purposes=tuple(ident.get("denied_purposes", ())),
                require_case_reference=bool(ident.get("require_case_reference", True)),
                max_fpir=float(ident.get("max_false_positive_identification_rate", 0.01)),
                quality_floor=floor,
                review_required_before_export=bool(d.get("review", {}).get("required_before_export", True)),
                local_roles=tuple(d.get("local", {}).get("roles", ())),
                digest=hashlib.sha256(text.encode()).hexdigest(),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidParameterError(f"{origin}: {exc!s} (docs/policy.md lists the fields)") from None
        if not 0.0 < policy.max_fpir <= 1.0:
            raise InvalidParameterError(f"{origin}: max_false_positive_identification_rate must be in (0, 1]")
        clash = set(policy.allowed_purposes) & set(policy.denied_purposes)
        if clash:
            raise InvalidParameterError(f"{origin}: purposes both allowed and denied: {', '.join(sorted(clash))}")
        return policy

    @staticmethod
    def source(spec: str) -> tuple[str, str]:
        """(text, origin) of a preset's name or a TOML file's path."""
        if spec in PRESETS:
            return resources.files("faceledger").joinpath("data", "policies", f"{spec}.toml").read_text(), f"preset {spec}"
        path = Path(spec).expanduser()
        if not path.is_file():
            raise InvalidParameterError(f"policy {spec!r} is neither a preset ({', '.join(PRESETS)}) nor a file")
        return path.read_text(), str(path)

    @classmethod
    def load(cls, spec: str) -> "Policy":
        """A preset's name or a TOML file's path."""
        return cls.parse(*cls.source(spec))

    def decide(self, ctx: Context, operation: str) -> Decision:
        roles = [r for r in ctx.principal.roles if r in self.roles]
        if not any("*" in self.roles[r] or operation in self.roles[r] for r in roles):
            held = ", ".join(ctx.principal.roles) or "no role"
            return Decision(False, f"{ctx.principal.name} ({held}) may not call {operation} under policy {self.name}")
        if operation not in IDENTIFICATION:
            return Decision(True, "role permits the operation")
        purpose = ctx.purpose
        if not purpose:
            return Decision(False, f"{operation} is identification: state a purpose (X-Faceledger-Purpose, --purpose)")
        if purpose in self.denied_purposes:
            return Decision(False, f"policy {self.name} denies identification for the purpose {purpose!r}")
        if "*" not in self.allowed_purposes and purpose not in self.allowed_purposes:
            return Decision(False, f"policy {self.name} does not allow identification for the purpose {purpose!r} "
                                   f"(allowed: {', '.join(self.allowed_purposes) or 'none'})")
        if "*" not in ctx.principal.purposes and purpose not in ctx.principal.purposes:
            return Decision(False, f"{ctx.principal.name} may not act for the purpose {purpose!r} "
                                   f"(its purposes: {', '.join(ctx.principal.purposes) or 'none'})")
        if self.require_case_reference and not ctx.case_reference:
            return Decision(False, "identification needs a case reference (X-Faceledger-Case, --case)")
        return Decision(True, f"identification for {purpose!r} permitted")

    @property
    def limits(self) -> Limits:
        return Limits(self.max_fpir, self.quality_floor)
