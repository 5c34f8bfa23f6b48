"""What OpenAI's official Python SDK says about each usage endpoint, read from its installed types.

The SDK (``openai``, a test extra) is generated from OpenAI's own description of the API; its
``client.admin.organization.usage.<endpoint>`` methods, ``Usage<Name>Params`` TypedDicts and
``Usage<Name>Response`` models are a second source of truth beside the public spec. Both the
registry-vs-SDK diff and the SDK conformance tests read them through here.
"""

from __future__ import annotations

import importlib
import inspect
import re
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import openai
from openai.resources.admin.organization.usage import Usage

#: Query parameters that are not filters.
NON_FILTERS = frozenset({"start_time", "end_time", "bucket_width", "limit", "page", "group_by"})


def _camel(key: str) -> str:
    return "".join(part.title() for part in key.split("_"))


def endpoint_methods() -> frozenset[str]:
    """The endpoints the SDK can call: the public methods of ``client.admin.organization.usage``."""
    skip = {"with_raw_response", "with_streaming_response"}
    return frozenset(
        name for name, member in vars(Usage).items() if not name.startswith("_") and name not in skip and inspect.isfunction(member)
    )


def params_type(key: str) -> Any:
    module = importlib.import_module(f"openai.types.admin.organization.usage_{key}_params")
    return getattr(module, f"Usage{_camel(key)}Params")


def response_type(key: str) -> type[openai.BaseModel]:
    module = importlib.import_module(f"openai.types.admin.organization.usage_{key}_response")
    return getattr(module, f"Usage{_camel(key)}Response")


def _strip(tp: Any) -> Any:
    """Optional[X] / Required[X] / Annotated[X, ...] → X (one level of each)."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        return _strip(args[0]) if len(args) == 1 else tp
    if origin in (typing.Annotated, typing_extensions_annotated(), typing.Required, typing.NotRequired):
        return _strip(get_args(tp)[0])
    return tp


def typing_extensions_annotated() -> Any:
    import typing_extensions

    return typing_extensions.Annotated


def literals(tp: Any) -> tuple[Any, ...]:
    """Every Literal value anywhere inside a type (List[Literal[...]], Optional[Literal[...]] ...)."""
    if get_origin(tp) is Literal:
        return get_args(tp)
    out: tuple[Any, ...] = ()
    for arg in get_args(tp):
        out += literals(arg)
    return out


@dataclass(frozen=True)
class SdkFilter:
    name: str
    kind: str  # "bool" or "strings"
    enum: tuple[str, ...] | None


@dataclass(frozen=True)
class SdkEndpoint:
    key: str
    path: str
    bucket_widths: tuple[str, ...]
    group_by: tuple[str, ...]
    filters: dict[str, SdkFilter]
    #: The result object the SDK expects for this path (the registry's when the SDK accepts any).
    result_object: str
    #: Every result object the SDK's response type accepts for this path.
    result_objects: tuple[str, ...]
    #: Dotted result field path → (registry-style type, enum or None).
    fields: dict[str, tuple[str, tuple[str, ...] | None]]
    result_model: type[openai.BaseModel]


def result_objects(key: str) -> tuple[str, ...]:
    data = _strip(response_type(key).model_fields["data"].annotation)
    results = _strip(get_args(data)[0].model_fields["results"].annotation)
    return tuple(literals(m.model_fields["object"].annotation)[0] for m in _models(get_args(results)[0]))


def result_model(key: str, result_object: str) -> type[openai.BaseModel]:
    """The response's result model whose ``object`` is ``result_object`` (costs answers with a union)."""
    data = _strip(response_type(key).model_fields["data"].annotation)
    bucket = get_args(data)[0]
    results = _strip(bucket.model_fields["results"].annotation)
    candidates = _models(get_args(results)[0])
    for model in candidates:
        if literals(model.model_fields["object"].annotation) == (result_object,):
            return model
    raise LookupError(f"{key}: no SDK result model with object {result_object!r}")


def _models(tp: Any) -> list[type]:
    tp = _strip(tp)
    if inspect.isclass(tp) and issubclass(tp, openai.BaseModel):
        return [tp]
    out: list[type] = []
    for arg in get_args(tp):
        out += _models(arg)
    return out


def _field_type(tp: Any) -> tuple[str, tuple[str, ...] | None]:
    base = _strip(tp)
    enum = literals(base) or None
    if base is int:
        return "int64", None
    if base is float:
        return "float", None
    if base is bool:
        return "bool", None
    if base is str or enum is not None or (get_origin(base) in (Union, types.UnionType) and str in get_args(base)):
        # Union[str, Literal[...]] (e.g. cost quantity units) is an open string: no closed enum.
        closed = enum if get_origin(base) is Literal else None
        return "string", closed
    raise TypeError(f"unmapped SDK type {tp!r}")


def _fields(model: type[openai.BaseModel], prefix: str = "") -> dict[str, tuple[str, tuple[str, ...] | None]]:
    out: dict[str, tuple[str, tuple[str, ...] | None]] = {}
    for name, info in model.model_fields.items():
        if name == "object" and not prefix:
            continue
        nested = [m for m in _models(info.annotation)]
        if nested:
            out |= _fields(nested[0], prefix + name + ".")
        else:
            out[prefix + name] = _field_type(info.annotation)
    return out


def describe(key: str, registry_result_object: str) -> SdkEndpoint:
    hints = get_type_hints(params_type(key), include_extras=True)
    filters = {}
    for name, tp in hints.items():
        if name in NON_FILTERS:
            continue
        base = _strip(tp)
        filters[name] = SdkFilter(name, "bool" if base is bool else "strings", tuple(literals(base)) or None)
    source = inspect.getsource(getattr(Usage, key))
    path = re.search(r'"(/organization/[a-z_/]+)"', source)
    assert path, f"no path in the SDK's {key} method"
    objects = result_objects(key)
    # The older endpoints answer with one union of every result type (discriminated by `object`),
    # so the SDK does not say which object belongs to which path; decisions has its own model.
    result_object = objects[0] if len(objects) == 1 else registry_result_object
    model = result_model(key, result_object)
    return SdkEndpoint(
        key=key,
        path=path.group(1),
        bucket_widths=tuple(literals(hints["bucket_width"])),
        group_by=tuple(literals(hints["group_by"])),
        filters=filters,
        result_object=result_object,
        result_objects=objects,
        fields=_fields(model),
        result_model=model,
    )
