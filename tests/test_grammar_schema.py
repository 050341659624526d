"""The grammar schema: every field reachable in declared order, null allowed where the field was optional."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from pydantic import BaseModel

from robustprompt._grammar_schema import every_field_reachable
from robustprompt._validate import Validator
from tests.schema_shapes import Person, Tree, random_models


class Profile(BaseModel):
    nickname: str | None = None  # declared before a required field: grammars used to close the object without it
    name: str
    age: int = 0


def objects(node: Any) -> list[dict[str, Any]]:
    """Every object schema in `node` that has properties, walking schema keywords only (a property may be named
    "properties")."""
    if not isinstance(node, dict):
        return []
    found = [node] if isinstance(node.get("properties"), dict) and node["properties"] else []
    for key in ("properties", "$defs"):
        for sub in node.get(key, {}).values():
            found += objects(sub)
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        for sub in node.get(key, []):
            found += objects(sub)
    for key in ("items", "additionalProperties"):
        found += objects(node.get(key))
    return found


def with_nulls(value: Any, schema: dict[str, Any], root: dict[str, Any]) -> Any:
    """`value` with every property it leaves out given as null, as a grammar-constrained model writes it."""
    while "$ref" in schema:
        schema = root["$defs"][schema["$ref"].split("/")[-1]]
    for branch in schema.get("anyOf", ()):
        if isinstance(value, dict) and ("$ref" in branch or branch.get("type") == "object"):
            return with_nulls(value, branch, root)
        if isinstance(value, list) and branch.get("type") == "array":
            return with_nulls(value, branch, root)
    if isinstance(value, dict) and "properties" in schema:
        props = schema["properties"]
        return {
            name: with_nulls(value[name], sub, root) if name in value else left_out(sub) for name, sub in props.items()
        }
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [with_nulls(item, schema["items"], root) for item in value]
    return value


def left_out(field: dict[str, Any]) -> Any:
    """What a model writes for a field it leaves out: null, or the default where null is a value of its own."""
    nullable = any(branch.get("type") == "null" for branch in field.get("anyOf", ()))
    return field.get("default") if nullable else None


def test_an_optional_field_declared_first_is_required_and_nullable_in_order() -> None:
    out = every_field_reachable(Profile.model_json_schema())
    assert out["required"] == ["nickname", "name", "age"]
    assert list(out["properties"]) == ["nickname", "name", "age"]
    assert out["properties"]["age"]["anyOf"] == [{"type": "integer"}, {"type": "null"}]
    assert out["properties"]["nickname"] == Profile.model_json_schema()["properties"]["nickname"]  # already nullable


def test_nested_models_through_refs_are_transformed_too() -> None:
    out = every_field_reachable(Person.model_json_schema())
    assert out["$defs"]["Address"]["required"] == ["street", "city"]
    assert out["required"] == list(out["properties"])


def test_a_null_for_a_field_that_was_optional_validates_to_its_default() -> None:
    validator = Validator(Profile, (), lambda m: m)
    output, errors = validator.validate({"nickname": None, "name": "Ann", "age": None})
    assert errors == [] and output == Profile(name="Ann")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=random_models, data=st.data())
def test_random_models_every_field_is_reachable_and_instances_round_trip(tree: Tree, data: st.DataObject) -> None:
    schema = tree.annotation.model_json_schema()
    before = copy.deepcopy(schema)
    out = every_field_reachable(schema)
    assert schema == before  # pure
    assert every_field_reachable(out) == out  # nothing left to change
    Draft202012Validator.check_schema(out)
    for node in objects(out):
        assert node["required"] == list(node["properties"])
    instance = data.draw(tree.values)
    dumped = instance.model_dump(mode="json", by_alias=True, exclude_unset=True)
    filled = with_nulls(dumped, schema, schema)
    Draft202012Validator(out).validate(filled)  # what the grammar lets the model write...
    validator = Validator(tree.annotation, (), lambda m: m)
    output, errors = validator.validate(filled)
    assert errors == []  # ...validates back into the model
    assert output.model_dump(by_alias=True) == instance.model_dump(by_alias=True)
