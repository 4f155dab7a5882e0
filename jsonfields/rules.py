"""Typed field rules: each reads one decoded JSON value (raising FieldErrors that name the field)
and describes itself as JSON Schema (2020-12, as OpenAPI 3.1 uses it).

A body's shape is declared once as a tree of rules; the handler reads with it and the API
description publishes its `schema()`, so the two cannot drift. Rules check everything they
declare, even parts a body would not use (a disabled Wowza encode), so a value the description
calls invalid is always refused. Rules a schema cannot say (two renditions with one name) stay in
the parser that uses the rule, and answer 422 like the rest.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from jsonfields.errors import FieldErrors, declared, index, join
from jsonfields.text import encoding_problem, text_problem

# JSON has one number type and no size limit; Python floats do. A number beyond float range would
# overflow wherever it is used in arithmetic, so it is refused, and the schema says so.
FLOAT_MAX = sys.float_info.max


class Rule(Protocol):
    def read(self, value: Any, path: str) -> Any:
        """The value read (possibly converted), or FieldErrors naming `path`."""
        ...

    def schema(self) -> dict[str, Any]: ...


def _fail(path: str, message: str) -> FieldErrors:
    return FieldErrors([f"{path or 'body'}: {message}"])


def _described(schema: dict[str, Any], doc: str) -> dict[str, Any]:
    return {**schema, "description": doc} if doc else schema


@dataclass(frozen=True, slots=True)
class Text:
    """A string of acceptable text (see jsonfields.text), within lengths, choices or a pattern.

    `pattern` is anchored (`^...$`) and written in the regular-expression syntax that Python and
    ECMA-262 (JSON Schema's) share. `message` replaces every problem's wording but the text
    problems, which say more precisely what was wrong."""

    min_length: int = 0
    max_length: int | None = None
    pattern: str | None = None
    choices: tuple[str, ...] = ()
    reserved: tuple[str, ...] = ()
    message: str | None = None
    doc: str = ""

    def read(self, value: Any, path: str) -> str:
        if not isinstance(value, str):
            raise _fail(path, self.message or "must be a string")
        problem = text_problem(value)
        if problem is not None:
            raise _fail(path, problem)
        if len(value) < self.min_length:
            raise _fail(path, self.message or f"must be at least {self.min_length} character(s)")
        if self.max_length is not None and len(value) > self.max_length:
            raise _fail(path, self.message or f"must be at most {self.max_length} characters")
        if self.choices and value not in self.choices:
            raise _fail(path, self.message or f"must be one of {', '.join(self.choices)}")
        if value in self.reserved:
            raise _fail(path, self.message or f"{value!r} is reserved")
        if self.pattern is not None and re.fullmatch(self.pattern, value) is None:
            raise _fail(path, self.message or f"must match {self.pattern}")
        return value

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "string"}
        if self.choices:
            out["enum"] = list(self.choices)
        if self.min_length:
            out["minLength"] = self.min_length
        if self.max_length is not None:
            out["maxLength"] = self.max_length
        if self.pattern is not None:
            out["pattern"] = self.pattern
        if self.reserved:
            out["not"] = {"enum": list(self.reserved)}
        if not self.pattern and not self.choices:
            # What text_problem refuses, said as JSON Schema: no control characters. (Lone
            # surrogates cannot be sent as UTF-8 at all, and JSON escapes of them are refused
            # for every string of every body, see refuse_unencodable.)
            out["pattern"] = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"
        return _described(out, self.doc)


def _finite(value: Any) -> float | None:
    """`value` as a finite float, or None (booleans are not numbers in JSON)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


@dataclass(frozen=True, slots=True)
class Integer:
    """An integer; JSON numbers with no fraction (30.0) count, as JSON Schema's "integer" says."""

    minimum: int | None = None
    maximum: int | None = None
    message: str | None = None
    doc: str = ""

    def read(self, value: Any, path: str) -> int:
        number = _finite(value)
        if number is None or not number.is_integer():
            raise _fail(path, self.message or "must be an integer")
        result = int(value)
        if self.minimum is not None and result < self.minimum:
            raise _fail(path, self.message or f"must be >= {self.minimum}")
        if self.maximum is not None and result > self.maximum:
            raise _fail(path, self.message or f"must be <= {self.maximum}")
        return result

    def schema(self) -> dict[str, Any]:
        return _described({
            "type": "integer",
            "minimum": self.minimum if self.minimum is not None else -FLOAT_MAX,
            "maximum": self.maximum if self.maximum is not None else FLOAT_MAX,
        }, self.doc)


@dataclass(frozen=True, slots=True)
class Number:
    """A finite number; `exclusive_minimum` makes the minimum itself refused."""

    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    message: str | None = None
    doc: str = ""

    def read(self, value: Any, path: str) -> float:
        number = _finite(value)
        if number is None:
            raise _fail(path, self.message or "must be a number")
        if self.minimum is not None and (number <= self.minimum if self.exclusive_minimum else number < self.minimum):
            raise _fail(path, self.message or f"must be {'>' if self.exclusive_minimum else '>='} {self.minimum}")
        if self.maximum is not None and number > self.maximum:
            raise _fail(path, self.message or f"must be <= {self.maximum}")
        return number

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "number", "minimum": -FLOAT_MAX, "maximum": FLOAT_MAX}
        if self.minimum is not None:
            if self.exclusive_minimum:
                del out["minimum"]
                out["exclusiveMinimum"] = self.minimum
            else:
                out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        return _described(out, self.doc)


@dataclass(frozen=True, slots=True)
class Boolean:
    message: str | None = None
    doc: str = ""

    def read(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise _fail(path, self.message or "must be true or false")
        return value

    def schema(self) -> dict[str, Any]:
        return _described({"type": "boolean"}, self.doc)


@dataclass(frozen=True, slots=True)
class Nullable:
    """`rule`, or null meaning "not given" (read as None)."""

    rule: Rule

    def read(self, value: Any, path: str) -> Any:
        return None if value is None else self.rule.read(value, path)

    def schema(self) -> dict[str, Any]:
        return {"anyOf": [self.rule.schema(), {"type": "null"}]}


@dataclass(frozen=True, slots=True)
class Array:
    """A list of at most `max_items`, each read by `items`; every bad item is reported."""

    items: Rule
    max_items: int
    unique: bool = False
    message: str | None = None  # for a value that is not an array
    doc: str = ""

    def read(self, value: Any, path: str) -> list[Any]:
        if not isinstance(value, list):
            raise _fail(path, self.message or "must be an array")
        if len(value) > self.max_items:
            raise _fail(path, f"at most {self.max_items} items")
        errors: list[str] = []
        out = []
        for i, item in enumerate(value):
            try:
                read = self.items.read(item, index(path, i))
            except FieldErrors as exc:
                errors.extend(exc.errors)
                continue
            if self.unique and read in out:
                errors.append(f"{index(path, i)}: {read} is listed twice")
            out.append(read)
        if errors:
            raise FieldErrors(errors)
        return out

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "array", "items": self.items.schema(), "maxItems": self.max_items}
        if self.unique:
            out["uniqueItems"] = True
        return _described(out, self.doc)


@dataclass(frozen=True, slots=True)
class Object:
    """A JSON object with declared fields, read into a dict of the fields given (nulls included
    for Nullable fields). Unknown fields are refused unless `others` is given: True lets them
    through unread (a client's own config, as LivepeerWowza sends), a rule reads each of them.
    `one_of_names` lists groups of which at least one field must be given."""

    fields: Mapping[str, Rule] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    others: bool | Rule = False
    max_fields: int | None = None
    any_of_names: tuple[tuple[str, ...], ...] = ()
    required_message: str = "required"
    doc: str = ""

    def read(self, value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise _fail(path, "must be a JSON object")
        errors: list[str] = []
        if self.others is False:
            errors += [f"{join(path, key)}: unknown field" for key in value if key not in self.fields]
        if self.max_fields is not None and len(value) > self.max_fields:
            errors.append(f"{path or 'body'}: at most {self.max_fields} fields")
        out: dict[str, Any] = {}
        for name, rule in self.fields.items():
            if name not in value:
                if name in self.required:
                    errors.append(f"{join(path, name)}: {self.required_message}")
                continue
            try:
                out[name] = rule.read(value[name], declared(path, name))
            except FieldErrors as exc:
                errors.extend(exc.errors)
        for group in self.any_of_names:
            if not any(name in value for name in group):
                errors.append(f"{join(path, group[0])}: required (or {', '.join(group[1:])})")
        if not isinstance(self.others, bool):
            for key, item in value.items():
                if key not in self.fields:
                    try:
                        out[key] = self.others.read(item, join(path, key))
                    except FieldErrors as exc:
                        errors.extend(exc.errors)
        if errors:
            raise FieldErrors(errors)
        return out

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "object",
            "properties": {name: rule.schema() for name, rule in self.fields.items()},
        }
        if self.required:
            out["required"] = list(self.required)
        out["additionalProperties"] = self.others if isinstance(self.others, bool) else self.others.schema()
        if self.max_fields is not None:
            out["maxProperties"] = self.max_fields
        if self.any_of_names:
            groups = [{"anyOf": [{"required": [name]} for name in group]} for group in self.any_of_names]
            out["allOf"] = groups
        return _described(out, self.doc)


@dataclass(frozen=True, slots=True)
class Check:
    """A rule written as a function, with the schema that describes what it accepts (the schema
    may accept more than the function: the function's refusals answer 422 all the same)."""

    reader: Callable[[Any, str], Any]
    described_as: Mapping[str, Any]

    def read(self, value: Any, path: str) -> Any:
        return self.reader(value, path)

    def schema(self) -> dict[str, Any]:
        return dict(self.described_as)


def refuse_unencodable(body: Any, limit: int = 20) -> None:
    """FieldErrors naming every key and string anywhere in a decoded body that cannot be encoded
    as UTF-8 (at most `limit`), including fields no rule reads. Iterative: bodies may nest as deep
    as the JSON decoder allows."""
    problems: list[str] = []
    stack: list[tuple[str, Any]] = [("", body)]
    while stack and len(problems) < limit:
        path, item = stack.pop()
        if isinstance(item, str):
            problem = encoding_problem(item)
            if problem is not None:
                problems.append(f"{path or 'body'}: {problem}")
        elif isinstance(item, dict):
            for key, child in reversed(list(item.items())):
                problem = encoding_problem(key)
                if problem is not None:
                    problems.append(f"{join(path, key)}: field name {problem}")
                stack.append((join(path, key), child))
        elif isinstance(item, list):
            stack.extend((index(path, i), child) for i, child in reversed(list(enumerate(item))))
    if problems:
        raise FieldErrors(problems[:limit])
