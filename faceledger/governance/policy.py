"""Who may do what, for which purpose: the policy every request is decided by.

A policy is a TOML file (docs/policy.md). Identification (1:N search) is purpose-bound: the
request states a purpose, the key must be allowed to act for it, the policy must allow it and
not deny it, and a case reference may be required. The probe must clear a quality floor, and the
search threshold rises with the gallery so that the false positive identification rate stays
under the policy's bound. Presets ship in faceledger/data/policies/; ``moratorium`` (the default)
denies identification for law-enforcement purposes.

Identification is not only a search: any call that compares one face with the faces of many
people is one. One rule covers them (``comparison``): a call comparing a face with more faces than
``max_faces_without_identification`` (a CompareFaces target holding a mosaic, an AssociateFaces
sweep) is decided as identification; under that bound, a caller who may not identify gets no
similarity for faces that do not match and spends a daily budget of comparisons. Separation of
duties keeps whoever ran a search from reviewing or exporting its candidates; accounts keep each
tenant to its own collections.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from faceledger.errors import InvalidParameterError
from faceledger.service.limits import Limits
from faceledger.service.scope import ACCOUNT_ID, DEFAULT_ACCOUNT
from faceledger.vision.quality import QualityFloor

#: 1:N operations: purpose-bound, quality-floored, gallery-aware. A stored video's face search is
#: one, and so is reading its results (GetFaceSearch): the candidates are the identification.
IDENTIFICATION = frozenset({"SearchFaces", "SearchFacesByImage", "SearchUsers", "SearchUsersByImage",
                            "StartFaceSearch", "GetFaceSearch"})
PRESETS = ("moratorium", "open")


@dataclass(frozen=True)
class Principal:
    """Who is asking: from an access key (HTTP) or the operating-system user (CLI)."""

    name: str
    roles: tuple[str, ...]
    purposes: tuple[str, ...]  # the purposes this principal may act for ("*": any)
    account: str = DEFAULT_ACCOUNT  # the account (tenant) the key belongs to


@dataclass(frozen=True)
class Context:
    principal: Principal
    purpose: str | None = None
    case_reference: str | None = None
    interface: str = "python"
    account: str | None = None  # the account acted in (X-Faceledger-Account); None: the principal's own

    @property
    def acting_account(self) -> str:
        return self.account or self.principal.account


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
    max_faces_without_identification: int = 1  # more faces compared in one call: identification
    daily_comparisons: int = 0  # per principal per UTC day without the identification purpose; 0: no bound
    separate_duties: bool = True  # who ran a search may not review or export its candidates
    cross_account_roles: tuple[str, ...] = ()  # roles that may act in another account
    digest: str = field(default="", compare=False)  # SHA-256 of the file's bytes
    #: Purposes whose identifications need no case reference even when the policy requires one:
    #: a door's access control has no case, every entry at it is the "case".
    case_free_purposes: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str, origin: str = "policy") -> "Policy":
        try:
            d = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise InvalidParameterError(f"{origin}: not valid TOML ({exc})") from None
        try:
            ident = d.get("identification", {})
            floor = QualityFloor(**{k: float(v) for k, v in ident.get("quality_floor", {}).items()})
            comparison, review = d.get("comparison", {}), d.get("review", {})
            policy = cls(
                name=str(d["name"]),
                roles={str(r): tuple(v.get("operations", ())) for r, v in d.get("roles", {}).items()},
                allowed_purposes=tuple(ident.get("allowed_purposes", ())),
                denied_purposes=tuple(ident.get("denied_purposes", ())),
                require_case_reference=bool(ident.get("require_case_reference", True)),
                max_fpir=float(ident.get("max_false_positive_identification_rate", 0.01)),
                quality_floor=floor,
                review_required_before_export=bool(review.get("required_before_export", True)),
                local_roles=tuple(d.get("local", {}).get("roles", ())),
                max_faces_without_identification=_count(comparison, "max_faces_without_identification", 1),
                daily_comparisons=_count(comparison, "daily_comparisons_without_identification", 0),
                separate_duties=bool(review.get("separate_duties", True)),
                cross_account_roles=tuple(d.get("accounts", {}).get("cross_account_roles", ())),
                digest=hashlib.sha256(text.encode()).hexdigest(),
                case_free_purposes=tuple(ident.get("case_free_purposes", ())),
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
        p = ctx.principal
        if ctx.acting_account != p.account:
            if not ACCOUNT_ID.fullmatch(ctx.acting_account):
                return Decision(False, f"an account id is 12 digits (as in an ARN), not {ctx.acting_account!r}")
            if not set(p.roles) & set(self.cross_account_roles):
                return Decision(False, f"{p.name} (account {p.account}) may not act in account {ctx.acting_account} "
                                       f"under policy {self.name} (its cross_account_roles: "
                                       f"{', '.join(self.cross_account_roles) or 'none'})")
        roles = [r for r in p.roles if r in self.roles]
        if not any("*" in self.roles[r] or operation in self.roles[r] for r in roles):
            held = ", ".join(p.roles) or "no role"
            able = [r for r, ops in self.roles.items() if "*" in ops or operation in ops]
            how = (f": roles that may, {', '.join(able)} (a key with one: faceledger keys create --role ROLE"
                   + ("; one made with --purpose P holds user and investigator)" if operation in IDENTIFICATION else ")")
                   if able else ": no role may")
            return Decision(False, f"{p.name} ({held}) may not call {operation} under policy {self.name}{how}")
        if operation not in IDENTIFICATION:
            return Decision(True, "role permits the operation")
        return self._identification(ctx, operation)

    def may_identify(self, ctx: Context, operation: str) -> Decision:
        """Whether this call may count as identification (a CompareFaces target of many faces, an
        AssociateFaces sweep): the caller holds a role that may search, and the purpose rules hold."""
        roles = [r for r in ctx.principal.roles if r in self.roles]
        if not any("*" in self.roles[r] or IDENTIFICATION & set(self.roles[r]) for r in roles):
            held = ", ".join(ctx.principal.roles) or "no role"
            return Decision(False, f"{operation} comparing more than {self.max_faces_without_identification} faces is "
                                   f"identification, and {ctx.principal.name} ({held}) holds no role that may identify "
                                   f"under policy {self.name}")
        return self._identification(ctx, operation)

    def _identification(self, ctx: Context, operation: str) -> Decision:
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
        if self.require_case_reference and not ctx.case_reference and purpose not in self.case_free_purposes:
            return Decision(False, f"identification for {purpose!r} needs a case reference under policy {self.name}: "
                                   "send X-Faceledger-Case (CLI --case), or make the key with a standing case "
                                   "(faceledger keys create --case REF)")
        return Decision(True, f"identification for {purpose!r} permitted")

    @property
    def limits(self) -> Limits:
        return Limits(self.max_fpir, self.quality_floor)


def _count(table: dict, name: str, default: int) -> int:
    value = table.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a whole number >= 0, not {value!r}")
    return value
