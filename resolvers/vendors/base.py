"""What every vendor connector declares, and what the base runs for all of them.

A connector states its settings, wire model, mapping and how it calls the vendor; the base turns a canonical
contact into a validated wire payload (pre-flight validation), and the fan-out engine handles deadlines, retries
and results. Nothing here names any vendor's wire fields.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from itertools import pairwise
from typing import Any, ClassVar, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_core import PydanticCustomError

from resolvers.errors import register_secret
from resolvers.model import (
    Address,
    Contact,
    ContactDetail,
    DetailKind,
    Location,
    error_code,
    error_message,
    render_path,
)
from resolvers.results import SUCCESS_STATUSES, FieldError, Vendor, VendorStatus
from resolvers.simulation import Simulator
from resolvers.transport import Transport


class VendorSettings(BaseModel):
    """Settings every vendor table takes (`[vendors.<name>]`), besides its own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: HttpUrl
    #: Deadline for one operation at this vendor, all attempts included.
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    #: Attempts per operation, the first included; only safe calls are repeated.
    max_attempts: int = Field(default=3, ge=1, le=20)
    #: Concurrent calls to this vendor from one process.
    max_concurrency: int = Field(default=16, ge=1, le=1000)
    #: Calls per second to this vendor (0 = unlimited).
    rate_per_s: float = Field(default=0, ge=0)
    #: Consecutive transient failures that open the circuit breaker (0 = no breaker).
    breaker_threshold: int = Field(default=5, ge=0, le=1000)
    #: How long an open breaker waits before letting one probe call through.
    breaker_cooldown_s: float = Field(default=30.0, gt=0, le=3600)
    #: 5xx statuses after which a create may have been made: by default a proxy's 502 Bad Gateway and 504 Gateway
    #: Timeout, which can come after the vendor behind it committed. A create answered so is treated as one whose
    #: answer was lost (looked up before a repeat, or not repeated when nothing could find it); any other 5xx is
    #: taken to mean the vendor did not act, and is retried.
    ambiguous_statuses: frozenset[int] = frozenset({502, 504})

    @field_validator("base_url")
    @classmethod
    def _trailing_slash(cls, value: HttpUrl) -> HttpUrl:
        # Endpoints are joined as f"{base_url}path": the base must end with a slash.
        if not str(value).endswith("/"):
            return HttpUrl(str(value) + "/")
        return value

    @field_validator("ambiguous_statuses")
    @classmethod
    def _server_errors(cls, value: frozenset[int]) -> frozenset[int]:
        # A 4xx is the vendor's own refusal (it did not act), and a 2xx it could not read is ambiguous already.
        outside = sorted(status for status in value if not 500 <= status <= 599)
        if outside:
            raise ValueError(f"only 5xx statuses can leave a create in doubt, not {outside}")
        return value

    @property
    def base(self) -> str:
        """The base URL as a string, always ending in `/`."""
        return str(self.base_url)


SettingsT = TypeVar("SettingsT", bound=VendorSettings)


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a vendor's API lets the gateway do."""

    create: bool = True
    update: bool = True
    delete: bool = False
    read: bool = False
    native_upsert: bool = False
    #: Records are found by content another contact may share (an e-mail), so the link to one a write made or
    #: adopted is recorded as soon as the vendor answers (`FanOut._claim`), before the write's other vendors do.
    shared_lookup: bool = False


@dataclass(frozen=True, slots=True)
class FieldCoverage:
    """Where one canonical field goes at a vendor (`vendor_field` None: the vendor cannot hold it)."""

    canonical: str
    vendor_field: str | None
    note: str | None = None


@dataclass(slots=True)
class Mapped:
    """The output of a vendor's `to_wire`: the payload, where each wire field came from, and what did not fit.

    `sources` maps a wire path (`contact2`, `locations[0].startDate`) to the canonical input path it was built from
    (`details[1].value`), so a wire-model violation can point back at what the caller typed.
    """

    payload: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    errors: list[FieldError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def put(self, wire_field: str, value: Any, source: str) -> None:
        """Set `wire_field` unless value is None (absent, so the wire model reports REQUIRED); remember its source."""
        self.sources[wire_field] = source
        if value is not None:
            self.payload[wire_field] = value

    def source(self, wire_path: str) -> str:
        """The canonical path behind a wire path.

        Tries the path, then its parents (`locations[0]`); a container (`Phones`, a list too long) maps to what its
        items' sources share (`details`).
        """
        path = wire_path
        while path:
            if path in self.sources:
                return self.sources[path]
            cut = max(path.rfind("."), path.rfind("["))
            path = path[:cut] if cut > 0 else ""
        children = [src for wire, src in self.sources.items() if wire.startswith((wire_path + "[", wire_path + "."))]
        return _common_parent(children) if wire_path else ""


def _common_parent(paths: list[str]) -> str:
    """The longest path every one of `paths` lies under, ending before a list index (`details`)."""
    if not paths:
        return ""
    split = [re.split(r"(?=[.\[])", p) for p in paths]
    common: list[str] = []
    for parts in zip(*split, strict=False):
        if any(part != parts[0] for part in parts):
            break
        common.append(parts[0])
    while common and common[-1].startswith("["):
        common.pop()
    return "".join(common).lstrip(".")


_PATH_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
_ABSENT: Any = object()


def nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """`{"Contact.ContactRoles[0].RoleId": x}` -> `{"Contact": {"ContactRoles": [{"RoleId": x}]}}`.

    `Mapped.put` keeps wire paths flat (so sources and payload share keys); a vendor whose body is nested
    builds its payload with this after the puts.
    """
    root: dict[str, Any] = {}
    for path, value in flat.items():
        steps, last = _steps(path)
        node: Any = root
        for key, makes_dict in steps:
            node = _child(node, key, makes_dict)
        _set(node, last, value)
    return root


@lru_cache(maxsize=4096)
def _steps(path: str) -> tuple[tuple[tuple[str | int, bool], ...], str | int]:
    """A wire path parsed once: the keys down to its parent (each with whether the next level is an object, not a
    list) and its last key. Wire paths are few (a mapping's fields, times small list indexes)."""
    keys: list[str | int] = [int(index) if index else name for name, index in _PATH_TOKEN.findall(path)]
    return tuple((key, isinstance(following, str)) for key, following in pairwise(keys)), keys[-1]


def _child(node: Any, key: str | int, makes_dict: bool) -> Any:
    if isinstance(key, int):
        node.extend([None] * (key + 1 - len(node)))
        if node[key] is None:
            node[key] = {} if makes_dict else []
        return node[key]
    found = node.get(key, _ABSENT)
    if found is _ABSENT:
        found = node[key] = {} if makes_dict else []
    return found


def _set(node: Any, key: str | int, value: Any) -> None:
    if isinstance(key, int):
        node.extend([None] * (key + 1 - len(node)))
        node[key] = value
    elif not (isinstance(value, list | dict) and not value and key in node):
        # An empty container put before its items must not wipe them out.
        node[key] = value


@dataclass(slots=True)
class Prepared:
    """A contact made ready for one vendor: the validated wire model, or every reason it is not valid."""

    vendor: Vendor
    payload: dict[str, Any]
    wire: BaseModel | None
    errors: list[FieldError]
    warnings: list[str]
    #: The gateway's id of the contact (adoption must not take a record another contact owns).
    contact_id: str = ""
    #: Wire path -> canonical input path (`Mapped.sources`), for vendor error bodies that name wire fields.
    sources: dict[str, str] = field(default_factory=dict)
    #: The write was forced (`force: true`): a vendor that skips what it finds unchanged is told not to.
    force: bool = False

    @property
    def valid(self) -> bool:
        """True when the vendor may be called."""
        return self.wire is not None and not self.errors


@dataclass(frozen=True, slots=True)
class CrossReference:
    """What the gateway knows of one contact at one vendor: its remote id and what the vendor last accepted."""

    contact_id: str
    vendor: Vendor
    remote_id: str | None
    hash: str | None
    last_status: VendorStatus | None
    synced_at: datetime | None
    deleted: bool = False
    last_error: str | None = None
    #: The wire payload the vendor last accepted (for partial updates that send only what changed).
    payload: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Delivered:
    """A successful vendor call: what it did and the vendor's id for the record."""

    status: VendorStatus
    remote_id: str | None
    http_status: int | None = None
    warnings: tuple[str, ...] = ()
    #: How an existing vendor record was found when the cross-reference had none (`email`, `DbiKey`, ...).
    matched_by: str | None = None


@dataclass(slots=True)
class AttemptState:
    """What one attempt of a vendor call has done so far, as far as repeating it is concerned (see `sending_create`)."""

    #: The attempt sent a create that a repeat would not find again (no lookup precedes it).
    unfindable_create: bool = False
    #: The attempt sent a create (findable or not).
    create_sent: bool = False


#: The state of the attempt running in this task, set by the fan-out engine around each attempt.
CURRENT_ATTEMPT: ContextVar[AttemptState | None] = ContextVar("vendor_attempt", default=None)


def lost_create_payload(link: CrossReference | None) -> dict[str, Any] | None:
    """What an earlier create of the contact sent when its answer was lost: a link whose last write failed but kept
    a payload (`VendorResult.maybe_created`). The record it may have made is found by that payload's key (an e-mail
    the contact has since changed), so a lookup tries it too before a second record is made."""
    if link is None or link.remote_id or not link.payload or link.last_status in SUCCESS_STATUSES:
        return None
    return link.payload


def sending_create(*, findable: bool) -> None:
    """Called by a connector just before it sends a create (`findable`: a repeat of the call looks the record up
    first, so it would adopt what this create made).

    The engine decides at the start of a call whether a lost answer may be repeated: an update by a known remote id
    may. A connector whose update finds the record gone and falls through to a create turns that call into one
    whose repeat would create a second record: after an unfindable create with no answer, the engine stops and
    reports the result as possibly written (`VendorResult.ambiguous`) instead of repeating it."""
    state = CURRENT_ATTEMPT.get()
    if state is not None:
        state.create_sent = True
        if not findable:
            state.unfindable_create = True


#: What a native-upsert vendor does with a field the body leaves out (ASSUMED where its documents do not say):
#: "omit": the record is replaced by what is sent, so a removed field is simply left out (and cleared);
#: "blank": the vendor keeps a field left out, so a removed text field is sent as "" to clear it.
RemovedFields = Literal["omit", "blank"]


def utf16_units(value: str) -> int:
    """The length of `value` in UTF-16 code units, as SQL Server's nvarchar and Java's String count it: a character
    outside the Basic Multilingual Plane (an emoji, a CJK extension ideograph) takes two."""
    return len(value.encode("utf-16-le")) // 2


def _not_blank(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("missing", "required, and not only spaces")
    return value


#: A wire text that must say something: a value of only spaces is as missing as an empty one (a vendor that trims
#: before its required check would refuse it; one that does not would store a key or name nobody can read).
NotBlank = AfterValidator(_not_blank)


def blank_removed(
    previous: Mapping[str, Any] | None, payload: Mapping[str, Any], typed: frozenset[str] = frozenset(), at: str = ""
) -> tuple[dict[str, Any], list[str]]:
    """For a vendor that keeps what an upsert leaves out (`removed_fields = "blank"`): `payload` with every text field
    the last accepted payload (`previous`) had and this one has not sent as "", clearing it; with the wire paths of
    the removed fields that are not text (a number, a flag, or a path in `typed`, such as a date the vendor parses),
    which "" cannot clear. Objects are compared member by member; a list is sent whole (a removed one as []), so it
    replaces what the vendor holds."""
    out = dict(payload)
    stuck: list[str] = []
    if previous is None:
        return out, stuck
    for key, before in previous.items():
        path = f"{at}{key}"
        if key not in out or out[key] is None:
            if isinstance(before, str) and before and path not in typed:
                out[key] = ""
            elif isinstance(before, list) and before:
                out[key] = []
            elif isinstance(before, Mapping):
                inner, inner_stuck = blank_removed(before, {}, typed, f"{path}.")
                if inner:
                    out[key] = inner
                stuck.extend(inner_stuck)
            elif before is not None and before != "":
                stuck.append(path)
        elif isinstance(before, Mapping) and isinstance(out[key], Mapping):
            inner, inner_stuck = blank_removed(before, out[key], typed, f"{path}.")
            out[key] = inner
            stuck.extend(inner_stuck)
    return out, stuck


#: A contact with every canonical field filled in: running a mapping on it shows which fields the vendor takes.
PROBE_CONTACT = Contact(
    id="probe",
    title="Dr",
    salutation="Dear Dr Probe",
    first_name="Pat",
    middle_name="Q",
    last_name="Probe",
    display_name="Pat Probe",
    job_title="Engineer",
    department="Research",
    organisation="Probe Ltd",
    birth_date=date(1980, 1, 2),
    notes="notes",
    considerations="considerations",
    details=[ContactDetail(kind=kind, value=f"{kind.value.lower()}@probe.example") for kind in DetailKind],
    address=Address(
        lines=["1 Probe St", "Probe Park"],
        city="Probeton",
        region="PR",
        post_code="PR1 1PR",
        country="GB",
        latitude=51.5,
        longitude=-0.1,
    ),
    locations=[
        Location(ref="L1", preferred=True, start_date=date(2020, 1, 1), end_date=date(2021, 1, 1), usage_type_id=1)
    ],
)


def wire_errors(exc: ValidationError, mapped: Mapped) -> list[FieldError]:
    """Every wire-model violation, pointing at the canonical input path and naming the vendor field."""
    out: list[FieldError] = []
    for err in exc.errors(include_url=False):
        wire_path = render_path(err["loc"])
        code = error_code(err["type"])
        out.append(
            FieldError(
                field=mapped.source(wire_path),
                code=code,
                message=error_message(err),
                vendor_field=wire_path or None,
            )
        )
    return out


_GENERIC_DIGITS = re.compile(r"\[\d+\]")


def _generic(path: str) -> str:
    """`details[2].value` -> `details[].value`: one row per field, not per list item."""
    return _GENERIC_DIGITS.sub("[]", path)


#: The last contact `_filled_paths` looked at, and its answer: the engine prepares one contact for every vendor in
#: turn, so this one-entry memo saves four dumps of five.
_last_filled: tuple[Contact | None, tuple[str, ...]] = (None, ())


def _filled_paths(contact: Contact) -> tuple[str, ...]:
    """Every leaf path the caller filled in (`details[1].value`), the id and vendor options aside."""
    global _last_filled
    if _last_filled[0] is not contact:
        # The id is the gateway's own key (its cross-reference holds the link), never "lost" at a vendor.
        data = contact.model_dump(mode="json", by_alias=True, exclude={"vendor_options", "id"}, exclude_defaults=True)
        _last_filled = (contact, tuple(_leaf_paths(data)))
    return _last_filled[1]


def _unsent(contact: Contact, mapped: Mapped, vendor: Vendor) -> list[str]:
    """Warnings for every field the caller filled in that this vendor's mapping did not use.

    Named at the widest level the vendor ignores entirely: `locations` once, not each location's every field.
    """
    return list(_unsent_for(_filled_paths(contact), _used(tuple(mapped.sources.values())), vendor))


@lru_cache(maxsize=4096)
def _used(sources: tuple[str, ...]) -> frozenset[str]:
    """The canonical paths a mapping used, list indexes made generic: memoised (a regex substitution per source,
    about twenty a vendor, five vendors a write, were 1.8% of the CPU at c=50), and the same frozenset object each
    time, so `_unsent_for`'s key hashes it once."""
    return frozenset(_generic(source) for source in sources)


@lru_cache(maxsize=4096)
def _unsent_for(paths: tuple[str, ...], used: frozenset[str], vendor: Vendor) -> tuple[str, ...]:
    """`_unsent` for a contact's shape (its filled paths) and what the mapping used: callers send few shapes."""

    def covered(generic: str) -> bool:
        return any(u == generic or u.startswith((generic + ".", generic + "[")) for u in used) or any(
            generic.startswith((u + ".", u + "[")) for u in used
        )

    out: list[str] = []
    for path in paths:
        if covered(_generic(path)):
            continue
        # Climb to the widest prefix that nothing under it was sent from.
        parts = re.split(r"(?=[.\[])", path)
        for end in range(1, len(parts) + 1):
            prefix = "".join(parts[:end]).rstrip(".")
            if not covered(re.sub(r"\[\d+\]$", "", _generic(prefix))):
                widest = re.sub(r"\[\d+\]$", "", prefix)
                break
        else:
            widest = path
        message = f"{widest}: not supported by {vendor.name}, not sent"
        if message not in out:
            out.append(message)
    return tuple(out)


def _leaf_paths(value: Any, prefix: str = "") -> list[str]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _leaf_paths(v, f"{prefix}.{k}" if prefix else k)]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _leaf_paths(v, f"{prefix}[{i}]")]
    return [prefix]


def canonical_fields() -> list[str]:
    """Every canonical field, in the generic form coverage tables use (`details[].value`)."""
    data = PROBE_CONTACT.model_dump(mode="json", by_alias=True, exclude={"vendor_options"})
    return list(dict.fromkeys(_generic(p) for p in _leaf_paths(data)))


class Connector(ABC, Generic[SettingsT]):
    """One vendor's connector: declares endpoints, auth and upsert semantics; the engine runs it.

    Subclasses set the class attributes and implement `map`, `upsert` (and `delete` when supported). They raise
    `resolvers.errors.VendorError` subclasses for every failure; the engine turns those into `VendorResult`s.
    """

    vendor: ClassVar[Vendor]
    settings_type: ClassVar[type[VendorSettings]]
    wire_model: ClassVar[type[BaseModel]]
    capabilities: ClassVar[Capabilities]

    def __init__(self, settings: SettingsT, transport: Transport) -> None:
        self.settings = settings
        self.transport = transport
        for name in type(settings).model_fields:
            value = getattr(settings, name)
            if isinstance(value, SecretStr):
                register_secret(value.get_secret_value())  # scrubbed from every error message from now on
        #: Who owns a remote record in the gateway's cross-reference (set by the engine; None: nobody known).
        self.link_owner: Callable[[str], Awaitable[str | None]] | None = None

    async def owned_by(self, remote_id: str, contact_id: str) -> bool:
        """May reconciliation adopt `remote_id` for `contact_id`? Not when another contact's link names it: two
        contacts sharing an e-mail address stay two records at the vendor."""
        if self.link_owner is None:
            return True
        owner = await self.link_owner(remote_id)
        return owner is None or owner == contact_id

    #: The vendor's pure `mapping.to_wire(contact, settings, options)`.
    to_wire: ClassVar[Callable[..., Mapped]]

    def map(self, contact: Contact) -> Mapped:
        """Build this vendor's wire payload from a canonical contact (pure: no I/O), with its `vendorOptions`."""
        return type(self).to_wire(contact, self.settings, self.options(contact))

    @abstractmethod
    async def upsert(self, prepared: Prepared, link: CrossReference | None) -> Delivered:
        """Send a prepared contact; `link` is what the cross-reference knows of it at this vendor, if anything."""

    async def delete(self, contact_id: str, link: CrossReference | None) -> Delivered:
        """Delete the contact at the vendor. Vendors without deletes report NOT_SUPPORTED."""
        raise NotImplementedError

    def coverage(self) -> list[FieldCoverage]:
        """Canonical field -> vendor field, generated by running this connector's mapping on a full contact."""
        mapped = self.map(PROBE_CONTACT)
        by_canonical: dict[str, list[str]] = {}
        for wire_path, source in mapped.sources.items():
            by_canonical.setdefault(_generic(source), []).append(_generic(wire_path))
        out: list[FieldCoverage] = []
        for canonical in canonical_fields():
            wire = sorted(set(by_canonical.get(canonical, [])))
            out.append(FieldCoverage(canonical=canonical, vendor_field=", ".join(wire) if wire else None))
        return out

    #: What the wire model's validators may read of the settings (pydantic's validation context); None: nothing.
    wire_context: dict[str, Any] | None = None

    def reconciles(self, prepared: Prepared) -> bool:
        """True when `upsert` without a remote id first looks for an existing record it can adopt (by e-mail,
        DbiKey, ...), so repeating a create whose answer was lost cannot make a duplicate. Default: no."""
        return False

    async def aclose(self) -> None:
        """Release what the connector holds at the vendor (sessions, licences). Default: nothing."""

    def prepare(self, contact: Contact) -> Prepared:
        """Pre-flight: map, then build the wire model, collecting every violated rule (not just the first)."""
        mapped = self.map(contact)
        errors = list(mapped.errors)
        wire: BaseModel | None = None
        try:
            wire = self.wire_model.model_validate(mapped.payload, context=self.wire_context)
        except ValidationError as exc:
            # A field the mapping already reported (say UNKNOWN_TYPE) is not reported again by the wire model.
            reported = {(e.field, e.vendor_field) for e in errors}
            errors.extend(e for e in wire_errors(exc, mapped) if (e.field, e.vendor_field) not in reported)
        warnings = list(mapped.warnings) + _unsent(contact, mapped, self.vendor)
        return Prepared(
            vendor=self.vendor,
            payload=mapped.payload,
            wire=wire,
            errors=errors,
            warnings=warnings,
            contact_id=contact.id,
            sources=mapped.sources,
        )

    def options(self, contact: Contact) -> dict[str, Any]:
        """This vendor's entry of the contact's `vendorOptions` (empty when none was given)."""
        return contact.vendor_options.get(self.vendor.value, {})


@dataclass(frozen=True, slots=True)
class VendorPlugin:
    """Everything the gateway needs to know of one vendor: one of these per folder, one line in the registry.

    `demo_config(base_url)` is the `[vendors.<name>]` table that points at this vendor's simulator served at
    `base_url` (used by `contact-gateway demo` and the tests). `bad_credentials` overrides that table so the
    simulator refuses the gateway's credentials; `rejecting_options` is a `vendorOptions` entry that passes
    pre-flight validation but that the simulator rejects (an unknown client ref, type id, ...): both feed the
    contract suite.
    """

    vendor: Vendor
    connector: type[Connector[Any]]
    simulator: Callable[[], Simulator]
    demo_config: Callable[[str], dict[str, Any]]
    bad_credentials: dict[str, Any]
    rejecting_options: dict[str, Any]
