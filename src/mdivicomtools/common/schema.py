"""JSON Schema documents generated from msgspec Structs.

The Structs are the single source of truth for every file format; this turns
one into a schema document that reads the same on every supported Python.
"""

from __future__ import annotations

from typing import Any

import msgspec

SCHEMA_DRAFT = "https://json-schema.org/draft/2020-12/schema"


def without(schema: dict[str, Any], struct: str, fields: tuple[str, ...]) -> None:
    """Drop internal fields (not part of the file format) from one struct's schema."""
    definition = schema["$defs"][struct]
    for name in fields:
        definition["properties"].pop(name, None)
        if name in definition.get("required", []):
            definition["required"].remove(name)


def _normalise(node: Any) -> Any:
    """Descriptions come from docstrings, whose whitespace differs between Python
    versions (3.13 dedents at compile time); one space between words everywhere
    keeps the generated files identical on every supported Python."""
    if isinstance(node, dict):
        return {
            key: " ".join(value.split())
            if key == "description" and isinstance(value, str)
            else _normalise(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_normalise(item) for item in node]
    return node


def struct_schema(struct: type, title: str, description: str) -> dict[str, Any]:
    schema = _normalise(msgspec.json.schema(struct))
    return {"$schema": SCHEMA_DRAFT, "title": title, "description": description, **schema}
