"""A JSON Schema check of the subset ``derivation.schema.json`` uses, so that reading a file
never depends on an optional package (``jsonschema`` checks the same in the tests).

Supported keywords: ``$ref`` (to ``#/$defs/...``), ``type``, ``const``, ``minimum``,
``required``, ``properties``, ``additionalProperties``, ``items``, ``anyOf``; annotations
(``description``, ``title``, ...) are ignored.  The first violation is returned as one line
with its JSON path.  The data's nesting is bounded first (:data:`MAX_NESTING`), so the
recursive walk cannot exhaust the stack.
"""

from __future__ import annotations

from typing import Any

MAX_NESTING = 48  # a derivation is ~10 levels deep; its arrays add one per axis

_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


def nesting(data: Any) -> int:
    """The depth of ``data`` (containers within containers), measured without recursion."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict | list):
            deepest = max(deepest, d)
            if d > MAX_NESTING:
                return d
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return deepest


def _is(v: Any, t: str) -> bool:
    if t == "integer":
        return isinstance(v, int) and not isinstance(v, bool)
    if t == "number":
        return isinstance(v, int | float) and not isinstance(v, bool)
    return isinstance(v, _TYPES[t])


def violation(data: Any, schema: dict[str, Any]) -> str | None:
    """The first place where ``data`` breaks ``schema``, as ``"$.a.b: why"``; ``None`` if none."""
    if nesting(data) > MAX_NESTING:
        return f"$: nested more than {MAX_NESTING} deep"
    return _check(data, schema, schema, "$")


def _check(v: Any, s: dict[str, Any], root: dict[str, Any], at: str) -> str | None:
    if "$ref" in s:
        ref = s["$ref"]
        node: Any = root
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        return _check(v, node, root, at)
    if "anyOf" in s:
        if not any(_check(v, alt, root, at) is None for alt in s["anyOf"]):
            return f"{at}: {_shown(v)} is none of the allowed forms"
    if "type" in s:
        types = s["type"] if isinstance(s["type"], list) else [s["type"]]
        if not any(_is(v, t) for t in types):
            return f"{at}: expected {' or '.join(types)}, got {_kind(v)}"
    if "const" in s and (v != s["const"] or type(v) is not type(s["const"])):
        return f"{at}: expected {s['const']!r}, got {_shown(v)}"
    if "minimum" in s and _is(v, "number") and v < s["minimum"]:
        return f"{at}: {v} is below the minimum {s['minimum']}"
    if isinstance(v, dict):
        for k in s.get("required", []):
            if k not in v:
                return f"{at}: the key {k!r} is missing"
        props = s.get("properties", {})
        extra = s.get("additionalProperties", True)
        for k, item in v.items():
            if k in props:
                why = _check(item, props[k], root, f"{at}.{k}")
            elif extra is False:
                return f"{at}: unexpected key {_shown(k)}"
            elif isinstance(extra, dict):
                why = _check(item, extra, root, f"{at}.{k}")
            else:
                why = None
            if why:
                return why
    if isinstance(v, list) and "items" in s:
        for i, item in enumerate(v):
            why = _check(item, s["items"], root, f"{at}[{i}]")
            if why:
                return why
    return None


def _kind(v: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(v), "null" if v is None else "a number"
    )


def _shown(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."
