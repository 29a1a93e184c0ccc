"""A small JSON Schema check for rnncheck's own committed schemas (no dependency): the keywords they use.

``problem(data, schema)`` returns the first place where ``data`` breaks ``schema``, as a JSON path
and what is wrong there, or None.  Supported: ``type``, ``const``, ``enum``, ``required``,
``properties``, ``additionalProperties``, ``items``, ``minimum`` and ``$ref`` into ``#/$defs``.
"""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


@cache
def load(name: str) -> dict:
    """One of the package's committed schemas (``baseline``, ``report``)."""
    return json.loads((Path(__file__).parent / "schemas" / f"{name}.schema.json").read_text(encoding="utf-8"))


def problem(data, schema: dict, root: dict | None = None, path: str = "$") -> str | None:
    """The first violation of ``schema`` in ``data`` (``"$.cases['a.py::x'].sketch.w: ..."``), or None."""
    root = root or schema
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/$defs/")
        return problem(data, root["$defs"][name], root, path)
    types = schema.get("type")
    if types is not None:
        allowed = [types] if isinstance(types, str) else types
        if not any(_TYPES[t](data) for t in allowed):
            return f"{path} is {json.dumps(data)[:60]}, not {' or '.join(allowed)}"
    if "const" in schema and data != schema["const"]:
        return f"{path} is {json.dumps(data)[:60]}, not {json.dumps(schema['const'])}"
    if "enum" in schema and data not in schema["enum"]:
        return f"{path} is {json.dumps(data)[:60]}, not one of {', '.join(map(json.dumps, schema['enum']))}"
    if "minimum" in schema and _TYPES["number"](data) and data < schema["minimum"]:
        return f"{path} is {data}, below {schema['minimum']}"
    if isinstance(data, dict):
        for key in schema.get("required", ()):
            if key not in data:
                return f"{path} has no {key!r}"
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, value in data.items():
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                found = problem(value, sub, root, f"{path}[{key!r}]" if not key.isidentifier() else f"{path}.{key}")
                if found:
                    return found
    if isinstance(data, list) and isinstance(schema.get("items"), dict):
        for i, value in enumerate(data):
            found = problem(value, schema["items"], root, f"{path}[{i}]")
            if found:
                return found
    return None
