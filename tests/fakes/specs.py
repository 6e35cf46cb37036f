"""The providers' official machine-readable descriptions (``../shared/specs``), for the fakes.

A strict fake checks every request body against the provider's own schema and answers a
violation the way the provider does. Without the specs the fakes cannot be strict, so a fake
that needs them refuses to start, with a message saying where they are looked for: never a
silent skip.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


class SpecsMissing(RuntimeError):
    pass


def specs_dir() -> Path:
    """``$SYNDICATE_SHARED/specs``, else ``shared/specs`` beside the repo or one level up."""
    candidates = [os.environ.get("SYNDICATE_SHARED"), REPO.parent / "shared", REPO.parent.parent / "shared"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "specs").is_dir():
            return Path(candidate) / "specs"
    looked = ", ".join(str(c) for c in candidates if c)
    raise SpecsMissing(f"the providers' specs (shared/specs) are not in {looked}: set SYNDICATE_SHARED to the "
                       f"shared folder; the strict fakes and contract tests need them")


def spec_file(name: str) -> Path:
    path = specs_dir() / name
    if not path.is_file():
        raise SpecsMissing(f"{path} is missing: the strict fakes and contract tests need it")
    return path


def _openapi_to_jsonschema(node: Any) -> Any:
    """OpenAPI 3.0 ``nullable: true`` as JSON Schema (draft 4 knows no ``nullable``)."""
    if isinstance(node, dict):
        node = {k: _openapi_to_jsonschema(v) for k, v in node.items()}
        if node.pop("nullable", False) and isinstance(node.get("type"), str):
            node["type"] = [node["type"], "null"]
        return node
    if isinstance(node, list):
        return [_openapi_to_jsonschema(v) for v in node]
    return node


@cache
def _openapi(filename: str) -> dict:
    path = spec_file(filename)
    if filename.endswith((".yaml", ".yml")):
        import yaml

        return _openapi_to_jsonschema(yaml.safe_load(path.read_text(encoding="utf-8")))
    return _openapi_to_jsonschema(json.loads(path.read_text(encoding="utf-8")))


@cache
def openapi_validator(filename: str, schema_name: str):
    """A jsonschema validator for ``components/schemas/SCHEMA_NAME`` of FILENAME (or, when
    SCHEMA_NAME starts with "/", the schema at that JSON pointer: a request body defined inline),
    every ``$ref`` resolved inside the spec. OpenAPI 3.1 files are JSON Schema 2020-12, 3.0 ones
    draft 4."""
    import jsonschema
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4, DRAFT202012

    spec = _openapi(filename)
    modern = str(spec.get("openapi", "")).startswith("3.1")
    uri = f"urn:syndicate-spec:{filename}"
    resource = Resource.from_contents(spec, default_specification=DRAFT202012 if modern else DRAFT4)
    registry = Registry().with_resource(uri, resource)
    pointer = schema_name if schema_name.startswith("/") else f"/components/schemas/{schema_name}"
    validator = jsonschema.Draft202012Validator if modern else jsonschema.Draft4Validator
    return validator({"$ref": f"{uri}#{pointer}"}, registry=registry)


def openapi_problems(filename: str, schema_name: str, body: Any) -> list[str]:
    """Every way BODY breaks the schema, as "field.path: message" (empty when it is valid)."""
    errors = sorted(openapi_validator(filename, schema_name).iter_errors(body), key=lambda e: list(e.path))
    return [f"{'.'.join(str(p) for p in e.path) or '(body)'}: {e.message}" for e in errors]


def openapi_schema(filename: str, schema_name: str) -> dict:
    """The raw ``components/schemas/SCHEMA_NAME`` of FILENAME (e.g. to list its properties)."""
    return _openapi(filename)["components"]["schemas"][schema_name]
