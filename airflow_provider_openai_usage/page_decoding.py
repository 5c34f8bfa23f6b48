"""A usage page's bytes decoded straight into typed results, checked in C by msgspec.

Why: decoding into plain dicts and then checking every value's type in Python was most of the cost
of turning a page into Parquet. For every endpoint whose results are flat (every one but costs,
which nests its amount), msgspec decodes each result into a ``Struct`` built from the registry:
``object`` must be the endpoint's result object, each known field has its registry type (ints are
ints of any size, amounts exact ``Decimal``, strings strings, booleans booleans, any of them null),
and **any field the registry does not know makes the typed decoding step aside**. Then the page is
decoded exactly as before (``hooks.usage.decode_json``: dicts, unknown fields kept in ``extra``,
legacy spellings read, every error message unchanged). So the typed path only ever accepts pages
the dict path would accept with the same values, and it never drops a field.

What the typed path hands over has the dict path's shape: the page and its buckets are dicts, and
a bucket's ``results`` is a list of typed results (``is_typed``); ``rows.bucket_columns`` reads
their columns by attribute.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_openai_usage.endpoints import Endpoint

#: endpoint key → (page decoder, result struct type), or None when the endpoint's results nest.
_DECODERS: dict[str, tuple[Any, type] | None] = {}


def _decoder(endpoint: Endpoint) -> tuple[Any, type] | None:
    if endpoint.key in _DECODERS:
        return _DECODERS[endpoint.key]
    import decimal
    from typing import Literal, Optional

    import msgspec

    python_types = {"int64": int, "string": str, "bool": bool, "decimal": decimal.Decimal}
    fields: list[tuple[str, Any, Any]] = [("object", Literal[endpoint.result_object], msgspec.NODEFAULT)]
    built: tuple[Any, type] | None = None
    columns = [c for c in endpoint.columns if c.role != "extra"]
    if all(len(c.path) == 1 and c.type in python_types for c in columns):
        for column in columns:
            fields.append((column.path[0], Optional[python_types[column.type]], None))  # noqa: UP045 - a runtime type
        result = msgspec.defstruct(f"{endpoint.key}_result", fields, forbid_unknown_fields=True, gc=False)
        # Times, has_more and next_page stay untyped: the hook's own checks name what is wrong with them.
        bucket = msgspec.defstruct(
            f"{endpoint.key}_bucket",
            [("object", Any, None), ("start_time", Any, None), ("end_time", Any, None), ("results", list[result])],  # type: ignore[valid-type]
            forbid_unknown_fields=True,
            gc=False,
            kw_only=True,
        )
        page = msgspec.defstruct(
            f"{endpoint.key}_page",
            [("object", Any, None), ("data", list[bucket]), ("has_more", Any, None), ("next_page", Any, None)],  # type: ignore[valid-type]
            forbid_unknown_fields=True,
            gc=False,
            kw_only=True,
        )
        built = (msgspec.json.Decoder(page), result)
    _DECODERS[endpoint.key] = built
    return built


def decode_typed_page(endpoint: Endpoint, body: bytes) -> dict[str, Any] | None:
    """The page as the hook hands it over, results typed; None when the page is not the common shape
    (a field the registry does not type, a legacy spelling, a value of another type, no page at all):
    the caller then decodes it the general way."""
    built = _decoder(endpoint)
    if built is None:
        return None
    import msgspec

    try:
        page = built[0].decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    out: dict[str, Any] = {
        "object": page.object,
        "data": [
            {"object": b.object, "start_time": b.start_time, "end_time": b.end_time, "results": b.results} for b in page.data
        ],
        "has_more": page.has_more,
    }
    if page.next_page is not None:
        out["next_page"] = page.next_page
    return out


def is_typed(endpoint: Endpoint, results: Sequence[Any]) -> bool:
    """Whether a bucket's results came from ``decode_typed_page`` (all of one typed kind)."""
    built = _DECODERS.get(endpoint.key)
    return bool(results) and built is not None and type(results[0]) is built[1]
