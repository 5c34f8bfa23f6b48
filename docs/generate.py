"""Writes the registry-driven parts of the docs, so they can never drift from the code.

    python docs/generate.py          # rewrite the generated blocks
    python docs/generate.py --check  # exit 1 if any block is stale (the test suite runs this)

A generated block sits between ``<!-- generated:NAME -->`` and ``<!-- /generated:NAME -->``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from airflow_provider_openai_usage import focus
from airflow_provider_openai_usage.endpoints import ENDPOINTS, Endpoint
from airflow_provider_openai_usage.storage import arrow_schema

DOCS = Path(__file__).resolve().parent


def _filters(endpoint: Endpoint) -> str:
    parts = []
    for f in endpoint.filters:
        kind = "bool" if f.kind == "bool" else ("list of " + " / ".join(f"`{v}`" for v in f.enum) if f.enum else "list of str")
        parts.append(f"`{f.name}` ({kind})")
    return ", ".join(parts)


def endpoints_table() -> str:
    rows = ["| endpoint | path | widths (max limit) | group_by | filters |", "|---|---|---|---|---|"]
    for e in ENDPOINTS.values():
        widths = ", ".join(f"{w} ({e.max_limit(w)})" for w in e.bucket_widths)
        rows.append(f"| `{e.key}` | `{e.path}` | {widths} | {', '.join(f'`{g}`' for g in e.group_by)} | {_filters(e)} |")
    return "\n".join(rows)


def row_columns() -> str:
    out = []
    for e in ENDPOINTS.values():
        dims = ", ".join(f"`{c.name}`" for c in e.dimensions)
        values = ", ".join(f"`{c.name}`" for c in e.values)
        out.append(f"- **{e.key}** (`{e.result_object}`): `start_time`, `end_time`, dimensions {dims}; values {values}; `extra`")
    return "\n".join(out)


def schemas() -> str:
    out = []
    for e in ENDPOINTS.values():
        out.append(f"### `{e.key}`\n\n| column | Parquet type | from the API |\n|---|---|---|")
        sources = {c.name: ".".join(c.path) for c in e.columns} | {"start_time": "bucket start_time", "end_time": "bucket end_time"}
        sources["extra"] = "fields this release does not type, as JSON"
        sources.setdefault("organization_id", "the connection's organization")
        for field in arrow_schema(e, organization=True):
            out.append(f"| `{field.name}` | `{field.type}`{'' if field.nullable else ' not null'} | `{sources[field.name]}` |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def endpoint_classes() -> dict[str, tuple[str, str]]:
    """endpoint key → (operator class, sensor class), read from the modules that define them."""
    from airflow_provider_openai_usage.operators.usage import OpenAIUsageOperator
    from airflow_provider_openai_usage.sensors.usage import OpenAIUsageSensor

    operators = {c.endpoint_key: c.__name__ for c in OpenAIUsageOperator.__subclasses__()}
    sensors = {c.endpoint_key: c.__name__ for c in OpenAIUsageSensor.__subclasses__()}
    return {key: (operators[key], sensors[key]) for key in ENDPOINTS}


def operator_classes() -> str:
    rows = ["| endpoint | operator | sensor |", "|---|---|---|"]
    rows += [f"| `{key}` | `{operator}` | `{sensor}` |" for key, (operator, sensor) in endpoint_classes().items()]
    return "\n".join(rows)


def connection_extras() -> str:
    from airflow_provider_openai_usage.connection import CONNECTION_EXTRAS, TEXT_EXTRAS

    rows = ["| extra | meaning | default | in the UI form |", "|---|---|---|---|"]
    for name, spec in CONNECTION_EXTRAS.items():
        rows.append(f"| `{name}` | {spec.description} | {spec.default:g} | {'yes' if spec.in_ui else 'no (set it in the JSON)'} |")
    for name, text in TEXT_EXTRAS.items():
        rows.append(f"| `{name}` | {text.description} | none | {'yes' if text.in_ui else 'no (set it in the JSON)'} |")
    return "\n".join(rows)


def directory_entities() -> str:
    from airflow_provider_openai_usage.directory import ENTITIES

    rows = ["| entity | path | read | parameters | names | official SDK |", "|---|---|---|---|---|---|"]
    for e in ENTITIES.values():
        read = ("one object per project" if not e.paged else f"pages of {e.max_limit}" + (" per project" if e.per_project else ""))
        if e.skips_archived_projects:
            read += " (active projects: the API refuses archived ones)"
        params = ", ".join(
            f"`{p.name}`" + (f" (sent: `{str(p.default).lower()}`)" if p.default is not None else "") for p in e.params
        )
        params = ", ".join(filter(None, [params, "`project_ids`" if e.per_project else ""])) or "–"
        names = ", ".join(f"`{n}`" for n in e.names) or "–"
        rows.append(f"| `{e.key}` | `{e.path}` | {read} | {params} | {names} | `{e.sdk_call}` |")
    return "\n".join(rows)


def directory_schemas() -> str:
    from airflow_provider_openai_usage.directory import ENTITIES, FROM_PROJECT
    from airflow_provider_openai_usage.directory_rows import arrow_schema as directory_schema

    out = []
    for e in ENTITIES.values():
        out.append(f"### `{e.key}` (`{e.object}`)\n\n| column | Parquet type | from the API | note |\n|---|---|---|---|")
        columns = {c.name: c for c in e.columns}
        for field in directory_schema(e, organization=True):
            if field.name not in columns:  # the organization level's column (issue #29)
                out.append(f"| `{field.name}` | `{field.type}` | the connection's organization | the organization the snapshot was read from |")
                continue
            c = columns[field.name]
            source = " or ".join("the project read" if p == (FROM_PROJECT,) else "`" + ".".join(p) + "`" for p in c.paths)
            out.append(f"| `{field.name}` | `{field.type}`{'' if field.nullable else ' not null'} | {source} | {c.description} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


BLOCKS = {"endpoints": endpoints_table, "row-columns": row_columns, "schemas": schemas, "classes": operator_classes}
BLOCKS["connection-extras"] = connection_extras
BLOCKS |= {"focus-columns": focus.columns_markdown, "focus-criteria": focus.criteria_markdown, "focus-units": focus.units_markdown}
BLOCKS |= {"directory-entities": directory_entities, "directory-schemas": directory_schemas}
BLOCK_RE = re.compile(r"(<!-- generated:(?P<name>[a-z-]+) -->\n)(?P<body>.*?)(<!-- /generated:(?P=name) -->)", re.S)


def render(text: str) -> str:
    return BLOCK_RE.sub(lambda m: m.group(1) + BLOCKS[m.group("name")]().rstrip() + "\n" + m.group(4), text)


def main(argv: list[str]) -> int:
    stale = []
    for page in sorted(DOCS.glob("*.md")):
        text = page.read_text()
        new = render(text)
        if new != text:
            stale.append(page.name)
            if "--check" not in argv:
                page.write_text(new)
    if stale and "--check" in argv:
        print("stale generated blocks in: " + ", ".join(stale) + " (run python docs/generate.py)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
