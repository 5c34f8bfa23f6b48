"""Rebuild the spec facts beside this file from OpenAI's official OpenAPI spec.

The tests never read anything outside the repository (a clone, an sdist has only this checkout), so
the facts they check the registry, the fake API and the directory against live here, derived from
OpenAI's spec (github.com/openai/openai-openapi, ``openapi.yaml``, MIT licence): the GET
operations of the usage, costs and admin paths this provider reads, their parameters (with the
descriptions that carry limits), the schemas they reference (descriptions dropped), and the
example answers the spec documents. Run it with a downloaded copy of that file to refresh::

    python tests/data/openai_spec/extract.py path/to/openapi.yaml --commit <sha>
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
USAGE_PREFIXES = ("/organization/usage/", "/organization/costs")
ADMIN_PATHS = (
    "/organization/projects", "/organization/projects/{project_id}", "/organization/users",
    "/organization/users/{user_id}", "/organization/projects/{project_id}/users",
    "/organization/projects/{project_id}/api_keys", "/organization/projects/{project_id}/service_accounts",
    "/organization/admin_api_keys", "/organization/projects/{project_id}/spend_limit",
    "/organization/projects/{project_id}/spend_alerts", "/organization/projects/{project_id}/rate_limits",
)
DROP = {"description", "title", "x-oaiMeta", "summary", "deprecated"}


def _strip(node: object) -> object:
    """Schemas without prose: types, enums, formats, required, $refs (the facts the tests check)."""
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in node.items() if k not in DROP}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def _refs(node: object) -> set[str]:
    return set(re.findall(r"#/components/schemas/([A-Za-z0-9_.-]+)", json.dumps(node)))


def _closure(spec: dict, names: set[str]) -> dict:
    schemas = spec["components"]["schemas"]
    todo, seen = set(names), set()
    while todo:
        name = todo.pop()
        if name in seen or name not in schemas:
            continue
        seen.add(name)
        todo |= _refs(schemas[name]) - seen
    return {name: schemas[name] for name in sorted(seen)}


def _operation(op: dict, keep_examples: bool) -> dict:
    out: dict = {
        "parameters": [
            {k: v for k, v in p.items() if k in ("name", "in", "required", "schema", "description")}
            for p in op.get("parameters", [])
        ],
        # A response's description is a fact (which status means what, e.g. "archived project").
        "responses": {
            status: {**_strip(answer), **({"description": answer["description"]} if "description" in answer else {})}
            for status, answer in op.get("responses", {}).items()
        },
    }
    for p in out["parameters"]:
        p["schema"] = _strip(p["schema"])
    example = op.get("x-oaiMeta", {}).get("examples", {}).get("response")
    if keep_examples and example:
        out["x-oaiMeta"] = {"examples": {"response": example}}
    return out


def facts(spec: dict, paths: list[str], commit: str, keep_examples: bool) -> dict:
    ops = {path: {"get": _operation(spec["paths"][path]["get"], keep_examples)} for path in paths}
    schemas = _closure(spec, _refs(ops) | {"ErrorResponse", "UsageResponse"})
    stripped = {name: _strip(schema) for name, schema in schemas.items()}
    for name, schema in schemas.items():
        example = schema.get("x-oaiMeta", {}).get("example")
        if keep_examples and example:
            stripped[name]["x-oaiMeta"] = {"example": example}
    return {
        "x-source": {
            "repo": "github.com/openai/openai-openapi", "path": "openapi.yaml", "commit": commit, "licence": "MIT",
            "note": "GET operations and referenced schemas, prose dropped; made by tests/data/openai_spec/extract.py",
        },
        "paths": ops,
        "components": {"schemas": stripped},
    }


def main() -> None:
    import yaml

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", type=Path, help="OpenAI's openapi.yaml (or a cut of it)")
    parser.add_argument("--admin-spec", type=Path, help="a second file holding the admin paths, if cut apart")
    parser.add_argument("--commit", required=True, help="the openai-openapi commit the file comes from")
    args = parser.parse_args()
    spec = yaml.safe_load(args.spec.read_text())
    usage = sorted(p for p in spec["paths"] if p.startswith(USAGE_PREFIXES))
    (HERE / "usage.json").write_text(json.dumps(facts(spec, usage, args.commit, False), indent=1, sort_keys=True) + "\n")
    examples = {
        "x-source": {"repo": "github.com/openai/openai-openapi", "path": "openapi.yaml", "commit": args.commit,
                     "note": "the spec's x-oaiMeta example answers, parsed from their JSON text"},
        "endpoint_examples": {
            p: {"response": json.loads(spec["paths"][p]["get"]["x-oaiMeta"]["examples"]["response"])} for p in usage
        },
        "object_examples": {
            name: json.loads(schema["x-oaiMeta"]["example"])
            for name, schema in _closure(spec, _refs([spec["paths"][p] for p in usage])).items()
            if "example" in schema.get("x-oaiMeta", {})
        },
    }
    (HERE / "usage_examples.json").write_text(json.dumps(examples, indent=1, sort_keys=True) + "\n")
    admin = yaml.safe_load(args.admin_spec.read_text()) if args.admin_spec else spec
    (HERE / "admin.json").write_text(json.dumps(facts(admin, list(ADMIN_PATHS), args.commit, True), indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
