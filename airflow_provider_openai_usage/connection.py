"""The ``openai_usage`` connection: every field declared once, read and checked once.

``get_provider_info`` turns ``CONNECTION_EXTRAS`` into the UI form; the hook turns a Connection into
``ConnectionSettings`` with ``read_settings``. Both import this module, so a new extra is one entry
here. Nothing heavy is imported: DAG files import the hook module at every parse.

The admin key lives in a ``SecretStr``: generic code that dumps settings (``repr``,
``dataclasses.asdict``, f-strings, logging) sees ``'***'``; only the hook asks for the value, to put
it in the Authorization header.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from airflow.sdk import Connection

    from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError

def _invalid(message: str) -> OpenAIUsageValidationError:
    # Imported when needed: Airflow imports this module (through get_provider_info) while it is
    # still initialising airflow.sdk, which our exceptions module needs.
    from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError

    return OpenAIUsageValidationError(message)


CONN_TYPE = "openai_usage"
DEFAULT_CONN_ID = "openai_usage_default"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
ADMIN_KEY_HINT = (
    "The Usage and Costs API needs an organization *admin* key (sk-admin-...) with the api.usage.read "
    "scope; project keys (sk-proj-...) and restricted keys are refused. Create one at "
    "https://platform.openai.com/settings/organization/admin-keys and store it as the connection's password."
)


@dataclass(frozen=True)
class ExtraSpec:
    """One connection extra: its UI label and help, JSON-schema type, lower bound and default.

    ``in_ui=False`` extras are read by the hook but not shown in the form: knobs for tests and the
    fake API (``backoff_base``) or for rare needs (``max_retry_after``), documented in
    docs/connection.md.
    """

    label: str
    description: str
    type: str  # "number" or "integer"
    default: float
    minimum: float
    in_ui: bool = True

    def parse(self, conn_id: str, name: str, raw: Any) -> float:
        if raw is None or raw == "":
            return self.default
        try:
            if isinstance(raw, bool):
                raise ValueError
            value = float(raw)
            if self.type == "integer":
                if value != int(value):
                    raise ValueError
                value = int(value)
        except (TypeError, ValueError, OverflowError):
            raise _invalid(
                f"connection {conn_id!r} has extra {name}={raw!r}, which is not {'an integer' if self.type == 'integer' else 'a number'}; "
                f"{self.description} (default {self.default:g})"
            ) from None
        if not value >= self.minimum or value == float("inf"):  # also refuses NaN
            raise _invalid(
                f"connection {conn_id!r} has extra {name}={raw!r}; it must be a finite number >= {self.minimum:g}. "
                f"{self.description} (default {self.default:g})"
            )
        return value


#: Every extra the hook reads, in form order.
CONNECTION_EXTRAS: dict[str, ExtraSpec] = {
    "timeout": ExtraSpec(
        "Request timeout (seconds)",
        "Seconds one request may take from sending it to the last byte of the answer before the page is retried.",
        "number", 60, 0.1,
    ),
    "max_retries": ExtraSpec(
        "Retries per page", "Retries of a page on 429, 5xx, timeouts and dropped connections.", "integer", 6, 0
    ),
    "max_retry_wait": ExtraSpec(
        "Retry wait budget per page (seconds)",
        "Total seconds one page may spend waiting between its retries before the task fails.",
        "number", 300, 0,
    ),
    "max_total_retry_wait": ExtraSpec(
        "Retry wait budget per pull (seconds)",
        "Total seconds all pages of one pull (one query) may spend waiting between retries, so a long "
        "outage fails the task in bounded time.",
        "number", 900, 0,
    ),
    "backoff_base": ExtraSpec(
        "Backoff base (seconds)",
        "First retry waits up to this long (full jitter), doubling per attempt; without Retry-After.",
        "number", 1.0, 0, in_ui=False,
    ),
    "max_retry_after": ExtraSpec(
        "Retry-After cap (seconds)",
        "No single Retry-After from the server is obeyed beyond this many seconds.",
        "number", 60.0, 0, in_ui=False,
    ),
}


@dataclass(frozen=True)
class TextExtraSpec:
    """One text connection extra (shown in the form): a name the API does not tell us, e.g. the organization."""

    label: str
    description: str
    in_ui: bool = True

    def parse(self, conn_id: str, name: str, raw: Any) -> str | None:
        if raw is None or raw == "":
            return None
        if not isinstance(raw, str) or not raw.strip():
            raise _invalid(f"connection {conn_id!r} has extra {name}={raw!r}, which is not text; {self.description}")
        return raw.strip()


#: Text extras: facts about the organization that no Usage or Costs answer carries.
TEXT_EXTRAS: dict[str, TextExtraSpec] = {
    "organization_id": TextExtraSpec(
        "Organization ID",
        "Your OpenAI organization ID (org-...): the organization level of every dataset "
        "(<dataset>/organization=<id>/) and FOCUS's BillingAccountId; checked against what the Costs API reports. "
        "Empty: read from the Costs API.",
    ),
    "organization_name": TextExtraSpec(
        "Organization name",
        "Your OpenAI organization's name: the FOCUS export's BillingAccountName.",
    ),
}


class SecretStr:
    """A string that does not show itself: repr/str/format give ``'***'``; pickling is refused.

    ``dataclasses.asdict`` deep-copies field values; a copy is the same object, still redacted.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretStr) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __copy__(self) -> SecretStr:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> SecretStr:
        return self

    def __reduce__(self) -> Any:
        raise TypeError("the admin key is not picklable: it must not reach files, XCom or trigger kwargs")


@dataclass(frozen=True)
class ConnectionSettings:
    """What the hook needs from a connection, validated; ``api_key`` is a ``SecretStr``."""

    base_url: str
    api_key: SecretStr
    timeout: float = CONNECTION_EXTRAS["timeout"].default
    max_retries: int = int(CONNECTION_EXTRAS["max_retries"].default)
    max_retry_wait: float = CONNECTION_EXTRAS["max_retry_wait"].default
    max_total_retry_wait: float = CONNECTION_EXTRAS["max_total_retry_wait"].default
    backoff_base: float = CONNECTION_EXTRAS["backoff_base"].default
    max_retry_after: float = CONNECTION_EXTRAS["max_retry_after"].default
    organization_id: str | None = None
    organization_name: str | None = None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate_base_url(url: str) -> str:
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises for a port out of range or not a number
    except ValueError:
        raise _invalid(f"connection host {url!r} has a port that is not a number from 1 to 65535") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise _invalid(f"connection host {url!r} is not a URL; use {DEFAULT_BASE_URL} (or leave it empty)")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise _invalid(
            f"connection host {url!r} uses plain http to a non-loopback host; the admin key would travel "
            "unencrypted. Use https (plain http is only allowed for 127.0.0.1/localhost, e.g. the fake API)"
        )
    return url.rstrip("/")


#: What an HTTP header value may carry: visible ASCII. OpenAI keys are letters, digits, '-' and '_'.
_KEY_CHARS = re.compile(r"[\x21-\x7e]+")
_CHAR_NAMES = {"\n": "a newline", "\r": "a carriage return", "\t": "a tab", " ": "a space"}


def validate_api_key(conn_id: str, raw: str | None) -> SecretStr:
    """The stripped key, or an error that says what is wrong with it without ever showing it."""
    key = (raw or "").strip()
    if not key:
        raise _invalid(f"connection {conn_id!r} has no password; put the admin API key there. {ADMIN_KEY_HINT}")
    if not _KEY_CHARS.fullmatch(key):
        position, char = next((i, c) for i, c in enumerate(key) if not _KEY_CHARS.fullmatch(c))
        what = _CHAR_NAMES.get(char, "a non-ASCII character" if ord(char) > 0x7E else "a control character")
        raise _invalid(
            f"connection {conn_id!r}: the admin key (password) has {what} at position {position + 1} of {len(key)}, "
            "which cannot be sent in an HTTP header; paste the key again as one line (the key is not shown here)"
        )
    return SecretStr(key)


def base_url_of(conn: Connection) -> str:
    host = (conn.host or "").strip()
    if host and "://" not in host:
        # URI-form connections split the URL into host, port and schema and drop its scheme.
        scheme = "http" if is_loopback(host) else "https"
        host = f"{scheme}://{host}" + (f":{conn.port}" if conn.port else "") + (f"/{conn.schema}" if conn.schema else "")
    return validate_base_url(host or DEFAULT_BASE_URL)


def read_settings(conn_id: str, conn: Connection) -> ConnectionSettings:
    """Validate a connection's password, host and extras; errors name the field and never the key."""
    if not conn.conn_type and not conn.password and "//" in (conn.schema or ""):
        # ``openai_usage://:KEY@`` is not a URI Airflow 3 can split (no '_' in a URI scheme): it
        # leaves conn_type empty and the whole text, key included, in ``schema``. Never show it.
        raise _invalid(
            f"connection {conn_id!r} is a URI Airflow could not read: a URI scheme cannot contain '_', so write "
            f"`openai-usage://:<admin key>@` (Airflow reads '-' as '_'), or use the JSON form "
            f"'{{\"conn_type\": \"{CONN_TYPE}\", \"password\": \"<admin key>\"}}' (the URI is not shown: it holds the key)"
        )
    key = validate_api_key(conn_id, conn.password)
    extra = conn.extra_dejson or {}
    if not isinstance(extra, dict):
        raise _invalid(f"connection {conn_id!r} has extras that are not a JSON object")

    def raw(name: str) -> Any:
        # The form of Airflow < 3 stored extras as ``extra__<conn type>__<name>``: read both.
        return extra.get(name, extra.get(f"extra__{CONN_TYPE}__{name}"))

    def value(name: str) -> float:
        return CONNECTION_EXTRAS[name].parse(conn_id, name, raw(name))

    def text(name: str) -> str | None:
        return TEXT_EXTRAS[name].parse(conn_id, name, raw(name))

    return ConnectionSettings(
        base_url=base_url_of(conn),
        api_key=key,
        timeout=value("timeout"),
        max_retries=int(value("max_retries")),
        max_retry_wait=value("max_retry_wait"),
        max_total_retry_wait=value("max_total_retry_wait"),
        backoff_base=value("backoff_base"),
        max_retry_after=value("max_retry_after"),
        organization_id=_organization_id(conn_id, text("organization_id")),
        organization_name=text("organization_name"),
    )


def _organization_id(conn_id: str, value: str | None) -> str | None:
    """The ``organization_id`` extra, checked: it becomes a folder of the layout (``organization=<id>``)."""
    if value is None:
        return None
    from airflow_provider_openai_usage.organizations import check_organization_id

    return check_organization_id(value, described_as=f"connection {conn_id!r} has extra organization_id")


def known_extras() -> list[str]:
    """Every extra the provider reads, numbers then text, in form order."""
    return [*CONNECTION_EXTRAS, *TEXT_EXTRAS]


def unknown_extras(conn: Connection) -> list[str]:
    """Extras this provider does not read (a typo such as ``max_retry`` would otherwise pass silently)."""
    extra = conn.extra_dejson or {}
    names = known_extras()
    known = set(names) | {f"extra__{CONN_TYPE}__{name}" for name in names}
    return sorted(str(k) for k in extra if k not in known) if isinstance(extra, dict) else []


def conn_fields() -> dict[str, dict[str, Any]]:
    """The extras shown in the UI form, as provider info's ``conn-fields`` (Airflow 3.2+ reads them)."""
    fields = {
        name: {
            "label": spec.label,
            "description": spec.description,
            "schema": {"type": [spec.type, "null"], "minimum": spec.minimum, "default": spec.default},
        }
        for name, spec in CONNECTION_EXTRAS.items()
        if spec.in_ui
    }
    fields.update(
        {
            name: {"label": spec.label, "description": spec.description, "schema": {"type": ["string", "null"]}}
            for name, spec in TEXT_EXTRAS.items()
            if spec.in_ui
        }
    )
    return fields
