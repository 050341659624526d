"""Validation of a parsed answer: pydantic for the typed object, jsonschema for messages, then the task's checks.

pydantic runs first because it is fast and its verdict is final; jsonschema runs only on a failure, because
its messages ("'happy' is not one of ['positive', 'negative']") are the ones a model corrects best.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from typing import Any, Generic, TypeVar

import pydantic

__all__ = ["Check", "Validator", "check_failure"]

M = TypeVar("M", bound="pydantic.BaseModel")  # a string: touching BaseModel here costs ~20 ms of import

Check = Callable[[Any], object]
"""A check passes when it returns None or True; it fails when it returns False or a message, or raises
ValueError / AssertionError (the message is fed back to the model)."""

_MAX_SCHEMA_ERRORS = 8


def check_failure(check: Check, value: object) -> str | None:
    """The failure message of one check on `value`, or None when it passes."""
    name = getattr(check, "__name__", type(check).__name__)
    try:
        verdict = check(value)
    except (ValueError, AssertionError) as exc:
        return f"check {name} failed: {exc}" if str(exc) else f"check {name} failed"
    if verdict is None or verdict is True:
        return None
    if verdict is False:
        return f"check {name} failed"
    return f"check {name} failed: {verdict}"


def _path(parts: Sequence[Any]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(root)"


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        resolved: Mapping[str, Any] = root.get("$defs", {}).get(ref.removeprefix("#/$defs/"), {})
        return resolved
    return schema


def _allows_null(schema: Mapping[str, Any], root: Mapping[str, Any]) -> bool:
    schema = _resolve(schema, root)
    kinds = schema.get("type")
    if kinds == "null" or (isinstance(kinds, list) and "null" in kinds):
        return True
    return any(_allows_null(branch, root) for branch in schema.get("anyOf", ()))


def drop_null_optionals(value: Any, schema: Mapping[str, Any], root: Mapping[str, Any]) -> Any:
    """Remove `null` given for an optional, non-nullable field.

    Strict output modes must list every field as required and send null for the ones the model leaves out;
    the typed model wants those fields absent so their defaults apply.
    """
    schema = _resolve(schema, root)
    if "anyOf" in schema and value is not None:
        # An Optional[Model] (or another union): walk the branch whose kind the value has.
        kind = "object" if isinstance(value, dict) else "array" if isinstance(value, list) else None
        branch = next((b for b in schema["anyOf"] if kind and _resolve(b, root).get("type") == kind), None)
        return value if branch is None else drop_null_optionals(value, branch, root)
    if isinstance(value, dict):
        props: Mapping[str, Any] = schema.get("properties", {})
        required = set(schema.get("required", ()))
        out: dict[str, Any] = {}
        for key, item in value.items():
            sub = props.get(key)
            if sub is None:
                out[key] = item
            elif item is None and key not in required and not _allows_null(sub, root):
                continue
            else:
                out[key] = drop_null_optionals(item, sub, root)
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [drop_null_optionals(item, schema["items"], root) for item in value]
    return value


class Validator(Generic[M]):
    """Validates JSON values into `model`, then runs `checks` on the value `unwrap` gives."""

    def __init__(self, model: type[M], checks: Sequence[Check], unwrap: Callable[[M], Any]) -> None:
        self.model = model
        self.schema: dict[str, Any] = model.model_json_schema()
        self.checks = tuple(checks)
        self.unwrap = unwrap

    @cached_property
    def _schema_validator(self) -> Any:
        import jsonschema  # loaded on the first failure only: most answers never need it

        cls = jsonschema.validators.validator_for(self.schema)
        return cls(self.schema)

    def validate(self, value: Any) -> tuple[Any, list[str]]:
        """(typed output, []) on success, else (None, error messages)."""
        value = drop_null_optionals(value, self.schema, self.schema)
        try:
            obj = self.model.model_validate(value)
        except pydantic.ValidationError as exc:
            return None, self._messages(value, exc)
        output = self.unwrap(obj)
        failures = [msg for check in self.checks if (msg := check_failure(check, output)) is not None]
        return (None, failures) if failures else (output, [])

    def _messages(self, value: Any, exc: pydantic.ValidationError) -> list[str]:
        errors = sorted(self._schema_validator.iter_errors(value), key=lambda e: list(e.absolute_path))
        messages = [f"at {_path(list(e.absolute_path))}: {e.message}" for e in errors[:_MAX_SCHEMA_ERRORS]]
        # pydantic may reject what the schema allows (custom validators): keep its words too
        for err in exc.errors(include_url=False)[:_MAX_SCHEMA_ERRORS]:
            line = f"at {_path(list(err['loc']))}: {err['msg']}"
            if not any(line.split(": ", 1)[0] == m.split(": ", 1)[0] for m in messages):
                messages.append(line)
        return messages
