"""A validator for AT Protocol lexicons (``../shared/specs/atproto``), as a PDS validates records.

It covers what the project's records and calls use: objects (``required``, ``nullable``),
strings (``maxLength``/``minLength`` in UTF-8 bytes, ``maxGraphemes``/``minGraphemes``, ``format``
datetime, uri, language, did, handle, at-identifier, nsid, record-key, tid, cid), integers,
booleans, arrays, refs, unions (by ``$type``), blobs (``accept``, ``maxSize``) and ``unknown``.
Sources: atproto.com/specs/lexicon (types and constraints), atproto.com/specs/record-key and
/specs/tid, /specs/lexicon#string-formats. A violation reads like the PDS's own messages
(``Record/text must not be longer than 300 graphemes``).
"""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

import regex

from .specs import specs_dir

_GRAPHEME = regex.compile(r"\X")
_FORMATS: dict[str, re.Pattern] = {
    # RFC 3339 with a time zone, as atproto.com/specs/lexicon#datetime requires.
    "datetime": re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})"),
    "uri": re.compile(r"[a-z][a-z0-9.+-]*:\S+", re.I),
    # BCP-47 (RFC 5646) language tags: "en", "en-US", "pt-BR", "zh-Hant"; "en_US" is not one.
    "language": re.compile(r"(?:[a-z]{2,3}(?:-[a-z]{3}){0,3}|[a-z]{4,8})(?:-[a-z]{4})?(?:-(?:[a-z]{2}|\d{3}))?"
                           r"(?:-(?:[a-z0-9]{5,8}|\d[a-z0-9]{3}))*(?:-x(?:-[a-z0-9]{1,8})+)?|x(?:-[a-z0-9]{1,8})+",
                           re.I),
    "did": re.compile(r"did:[a-z]+:[a-zA-Z0-9._:%-]*[a-zA-Z0-9._-]"),
    "handle": re.compile(r"([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"),
    "nsid": re.compile(r"[a-zA-Z]([a-zA-Z0-9-]{0,62})?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,62})?)+"),
    "record-key": re.compile(r"(?!\.{1,2}$)[A-Za-z0-9._:~-]{1,512}"),
    "tid": re.compile(r"[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}"),
    "cid": re.compile(r"[A-Za-z0-9+/=]{8,}"),
}
_FORMATS["at-identifier"] = re.compile(f"(?:{_FORMATS['did'].pattern})|(?:{_FORMATS['handle'].pattern})")


class LexiconError(ValueError):
    pass


@cache
def lexicon(nsid: str) -> dict:
    path = specs_dir() / "atproto" / (nsid.replace(".", "/") + ".json")
    if not path.is_file():
        raise LexiconError(f"lexicon {nsid} is not among the shared specs ({path})")
    return json.loads(path.read_text(encoding="utf-8"))


def _resolve(ref: str, context: str) -> tuple[dict, str]:
    """The definition REF names (``#def``, ``nsid`` or ``nsid#def``), and its lexicon id."""
    nsid, _, name = ref.partition("#")
    nsid = nsid or context
    doc = lexicon(nsid)
    definition = doc["defs"].get(name or "main")
    if definition is None:
        raise LexiconError(f"{ref} is not defined in {nsid}")
    return definition, nsid


def validate_record(nsid: str, record: Any) -> None:
    """Raise LexiconError when RECORD is not a valid NSID record (e.g. app.bsky.feed.post)."""
    main = lexicon(nsid)["defs"]["main"]
    if not isinstance(record, dict) or record.get("$type") != nsid:
        raise LexiconError(f"Record/$type must be {nsid}")
    validate(main["record"], record, nsid, "Record")


def validate_input(nsid: str, body: Any) -> None:
    """Raise LexiconError when BODY is not the JSON input procedure NSID takes."""
    validate(lexicon(nsid)["defs"]["main"]["input"]["schema"], body, nsid, "Input")


def validate(schema: dict, value: Any, context: str, path: str) -> None:  # noqa: C901 - one branch per type
    kind = schema.get("type")
    if kind == "ref":
        definition, nsid = _resolve(schema["ref"], context)
        return validate(definition, value, nsid, path)
    if kind == "union":
        return _union(schema, value, context, path)
    if kind == "object" or kind == "record":
        return _object(schema.get("record", schema), value, context, path)
    if kind == "string":
        return _string(schema, value, path)
    if kind == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            raise LexiconError(f"{path} must be an integer")
        if "minimum" in schema and value < schema["minimum"]:
            raise LexiconError(f"{path} can not be less than {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise LexiconError(f"{path} can not be greater than {schema['maximum']}")
        return None
    if kind == "boolean":
        if not isinstance(value, bool):
            raise LexiconError(f"{path} must be a boolean")
        return None
    if kind == "array":
        if not isinstance(value, list):
            raise LexiconError(f"{path} must be an array")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise LexiconError(f"{path} must not have more than {schema['maxLength']} elements")
        if "minLength" in schema and len(value) < schema["minLength"]:
            raise LexiconError(f"{path} must not have fewer than {schema['minLength']} elements")
        for i, item in enumerate(value):
            validate(schema["items"], item, context, f"{path}/{i}")
        return None
    if kind == "blob":
        return _blob(schema, value, path)
    if kind == "unknown":
        if not isinstance(value, dict):
            raise LexiconError(f"{path} must be an object")
        return None
    raise LexiconError(f"{path}: lexicon type {kind!r} is not supported by this validator")


def _object(schema: dict, value: Any, context: str, path: str) -> None:
    if not isinstance(value, dict):
        raise LexiconError(f"{path} must be an object")
    nullable = set(schema.get("nullable", []))
    for name in schema.get("required", []):
        if name not in value or (value[name] is None and name not in nullable):
            raise LexiconError(f'{path} must have the property "{name}"')
    for name, prop in (schema.get("properties") or {}).items():
        if name in value and not (value[name] is None and name in nullable):
            validate(prop, value[name], context, f"{path}/{name}")


def _union(schema: dict, value: Any, context: str, path: str) -> None:
    if not isinstance(value, dict) or not isinstance(value.get("$type"), str):
        raise LexiconError(f"{path} must be an object which includes the \"$type\" property")
    wanted = value["$type"]
    for ref in schema["refs"]:
        nsid, _, name = ref.partition("#")
        full = f"{nsid or context}#{name}" if name and name != "main" else (nsid or context)
        if wanted in (full, f"{full}#main"):
            definition, owner = _resolve(ref, context)
            return validate(definition, value, owner, path)
    if schema.get("closed"):
        raise LexiconError(f"{path} $type must be one of {', '.join(schema['refs'])}")
    return None  # an open union admits types it does not know


def _string(schema: dict, value: Any, path: str) -> None:
    if not isinstance(value, str):
        raise LexiconError(f"{path} must be a string")
    size = len(value.encode("utf-8"))
    if "maxLength" in schema and size > schema["maxLength"]:
        raise LexiconError(f"{path} must not be longer than {schema['maxLength']} characters")
    if "minLength" in schema and size < schema["minLength"]:
        raise LexiconError(f"{path} must not be shorter than {schema['minLength']} characters")
    graphemes = len(_GRAPHEME.findall(value))
    if "maxGraphemes" in schema and graphemes > schema["maxGraphemes"]:
        raise LexiconError(f"{path} must not be longer than {schema['maxGraphemes']} graphemes")
    if "minGraphemes" in schema and graphemes < schema["minGraphemes"]:
        raise LexiconError(f"{path} must not be shorter than {schema['minGraphemes']} graphemes")
    fmt = schema.get("format")
    if fmt and fmt in _FORMATS and not _FORMATS[fmt].fullmatch(value):
        raise LexiconError(f"{path} must be a valid {fmt}")
    if fmt == "uri" and size > 8192:  # atproto.com/specs/lexicon: uri "max 8 KBytes"
        raise LexiconError(f"{path} must be a uri of at most 8192 bytes")
    if "enum" in schema and value not in schema["enum"]:
        raise LexiconError(f"{path} must be one of {schema['enum']}")


def _blob(schema: dict, value: Any, path: str) -> None:
    if not isinstance(value, dict) or value.get("$type") != "blob" or not isinstance(value.get("ref"), dict):
        raise LexiconError(f"{path} should be a blob ref")
    mime, size = value.get("mimeType", ""), value.get("size")
    accept = schema.get("accept")
    if accept and not any(mime == a or (a.endswith("/*") and mime.startswith(a[:-1])) for a in accept):
        raise LexiconError(f"{path} has a mimeType {mime!r} that is not accepted ({', '.join(accept)})")
    if "maxSize" in schema and isinstance(size, int) and size > schema["maxSize"]:
        raise LexiconError(f"{path} is too big: {size} bytes, at most {schema['maxSize']}")


def validate_facets(text: str, facets: list[dict]) -> None:
    """Facet byte ranges inside the text and on UTF-8 character boundaries (byteSlice: "counting
    bytes of the UTF-8 encoded text"; app.bsky.richtext.facet). A PDS stores a bad range; the
    app then links the wrong text or nothing, so this fake refuses it."""
    data = text.encode("utf-8")
    for i, facet in enumerate(facets):
        start, end = facet["index"]["byteStart"], facet["index"]["byteEnd"]
        if not 0 <= start < end <= len(data):
            raise LexiconError(f"Record/facets/{i}/index must lie within the text's {len(data)} UTF-8 bytes")
        try:
            data[start:end].decode("utf-8")
        except UnicodeDecodeError:
            raise LexiconError(f"Record/facets/{i}/index does not fall on UTF-8 character boundaries") from None
