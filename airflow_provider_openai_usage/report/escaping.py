"""Names are data, never markup: the same alert fields escaped for each place a notifier puts them.

Anyone who can name an OpenAI project, user or key controls the strings an alert quotes. A notifier
renders them into Slack mrkdwn (where ``<!channel>`` pings everyone and ``<url|text>`` is a link), an
HTML mail body (where ``<script>`` runs in some clients) or a mail header (where a CR/LF makes the
message unsendable, on every retry). So templates get each field three more ways:
``spend_alert.slack.<field>``, ``spend_alert.html.<field>`` and ``spend_alert.header.<field>``.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping
from typing import Any

#: Slack's broadcast mentions, also written bare (``@channel``): a zero-width space after the ``@``
#: keeps the word readable and stops the ping.
_MENTION = re.compile(r"@(channel|here|everyone)\b", re.IGNORECASE)
#: What may not sit in a mail header: CR/LF (a header break) and every other control or line separator.
_HEADER_BREAKS = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]+")


def slack_text(value: str) -> str:
    """Slack mrkdwn literal text: ``&``, ``<``, ``>`` escaped as Slack documents, mentions neutralised."""
    escaped = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MENTION.sub("@\u200b\\1", escaped)


def html_text(value: str) -> str:
    """HTML literal text (quotes too, so a field is safe inside an attribute)."""
    return html.escape(value, quote=True)


def header_text(value: str) -> str:
    """One header line: every line break or control character becomes a space."""
    return _HEADER_BREAKS.sub(" ", value)


def mail_text(value: str) -> str:
    """Safe in a mail's HTML body and in its headers (what plain fields are for e-mail notifiers)."""
    return html_text(header_text(value))


ESCAPES: Mapping[str, Callable[[str], str]] = {"slack": slack_text, "html": html_text, "header": header_text}


def escaped(fields: Mapping[str, Any], escape: Callable[[str], str]) -> dict[str, Any]:
    """Every string field escaped with ``escape`` (numbers, None and nested mappings stay as they are)."""
    return {k: escape(v) if isinstance(v, str) else v for k, v in fields.items()}


def template_fields(fields: Mapping[str, Any], plain: Callable[[str], str] | None = None) -> dict[str, Any]:
    """``fields`` (escaped with ``plain`` if given) plus the ``slack``, ``html`` and ``header`` variants."""
    out = escaped(fields, plain) if plain is not None else dict(fields)
    out.update({name: escaped(fields, escape) for name, escape in ESCAPES.items()})
    return out


def plain_escape_for(notifier: object) -> Callable[[str], str] | None:
    """How a notifier's plain ``spend_alert.<field>`` is escaped: safe by default for the notifiers we know.

    Slack notifiers (apache-airflow-providers-slack) get Slack text; e-mail notifiers (smtp, or any
    notifier with a ``subject``) get text safe in HTML and in headers; others get the fields as they are.
    """
    cls = type(notifier)
    where = f"{cls.__module__}.{cls.__name__}".lower()
    if "slack" in where:
        return slack_text
    if "smtp" in where or "email" in where or hasattr(notifier, "subject"):
        return mail_text
    return None
