"""to_strict_schema: pydantic schemas in, schemas OpenAI strict mode accepts out (checked independently)."""

from __future__ import annotations

import copy
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from pydantic import BaseModel, Field, TypeAdapter, create_model

from robustprompt._errors import ConfigError
from robustprompt.adapters._openai_schema import to_strict_schema
from tests.schema_shapes import Address, Node, Person, Tree, random_models
from tests.spec_check import strict_violations

NULL = {"type": "null"}


def strict(model: type[BaseModel]) -> dict[str, Any]:
    out = to_strict_schema(model.model_json_schema())
    assert strict_violations(out) == []
    Draft202012Validator.check_schema(out)
    return out


# ---------------------------------------------------------------- shapes


def test_root_and_nested_objects_are_closed_and_fully_required() -> None:
    out = strict(Person)
    assert out["type"] == "object"
    assert out["additionalProperties"] is False
    assert out["required"] == list(Person.model_json_schema()["properties"])
    address = out["$defs"]["Address"]
    assert address["additionalProperties"] is False
    assert address["required"] == ["street", "city"]


def test_titles_and_defaults_are_dropped() -> None:
    out = strict(Person)
    text = repr(out)
    assert "'title'" not in text
    assert "'default'" not in text


def test_fields_that_were_not_required_become_nullable() -> None:
    props = strict(Person)["properties"]
    assert props["age"] == {"anyOf": [{"type": "integer"}, NULL]}  # already nullable: no second null
    assert props["nickname"] == {"anyOf": [{"type": "string"}, NULL]}  # required and nullable: unchanged
    assert props["name"] == {"description": "Full name", "type": "string"}  # required: not nullable
    assert strict(Person)["$defs"]["Address"]["properties"]["city"] == {"anyOf": [{"type": "string"}, NULL]}


def test_enum_and_literal_keep_their_values() -> None:
    out = strict(Person)
    assert out["properties"]["color"] == {"anyOf": [{"$ref": "#/$defs/Color"}, NULL]}
    assert out["$defs"]["Color"] == {"enum": ["red", "green"], "type": "string"}
    assert out["properties"]["kind"] == {"anyOf": [{"enum": ["a", "b"], "type": "string"}, NULL]}
    assert out["properties"]["tag"] == {"const": "person", "type": "string"}


def test_list_of_models() -> None:
    previous = strict(Person)["properties"]["previous"]
    assert previous == {"anyOf": [{"items": {"$ref": "#/$defs/Address"}, "type": "array"}, NULL]}


def test_recursive_model_is_inlined_at_the_root_and_keeps_its_definition() -> None:
    assert "$ref" in Node.model_json_schema()  # pydantic puts a recursive root behind a $ref
    out = strict(Node)
    assert "$ref" not in out
    assert out["type"] == "object"
    assert out["properties"]["children"]["anyOf"][0]["items"] == {"$ref": "#/$defs/Node"}
    assert out["$defs"]["Node"]["required"] == ["value", "children"]
    Draft202012Validator(out).validate({"value": 1, "children": [{"value": 2, "children": None}]})


def test_ref_with_siblings_is_wrapped_in_any_of() -> None:
    class Order(BaseModel):
        ship_to: Address = Field(description="Where to ship")

    assert Order.model_json_schema()["properties"]["ship_to"].keys() == {"$ref", "description"}
    assert strict(Order)["properties"]["ship_to"] == {
        "anyOf": [{"$ref": "#/$defs/Address"}],
        "description": "Where to ship",
    }


def test_discriminated_union_becomes_any_of() -> None:
    class Cat(BaseModel):
        pet: Literal["cat"]

    class Dog(BaseModel):
        pet: Literal["dog"]

    class Owner(BaseModel):
        animal: Annotated[Cat | Dog, Field(discriminator="pet")]

    assert "oneOf" in Owner.model_json_schema()["properties"]["animal"]
    assert strict(Owner)["properties"]["animal"] == {"anyOf": [{"$ref": "#/$defs/Cat"}, {"$ref": "#/$defs/Dog"}]}


def test_unsupported_constraints_move_into_the_description() -> None:
    class Form(BaseModel):
        user: str = Field(min_length=3, max_length=10, description="Login")
        code: str = Field(max_length=4)
        ids: set[int]
        site: str = Field(json_schema_extra={"format": "uri"})
        when: str = Field(json_schema_extra={"format": "date-time"})
        word: str = Field(json_schema_extra={"pattern": "^(?!bad)[a-z]+$"})
        plain: str = Field(pattern="^[a-z]+$")
        score: float = Field(ge=0, lt=1, multiple_of=0.5)
        few: list[int] = Field(min_length=1, max_length=3)

    props = strict(Form)["properties"]
    assert props["user"] == {"description": "Login (maxLength: 10; minLength: 3)", "type": "string"}
    assert props["code"] == {"description": "maxLength: 4", "type": "string"}
    assert props["ids"]["description"] == "uniqueItems: true"
    assert props["site"] == {"type": "string", "description": "format: uri"}
    assert props["when"] == {"type": "string", "format": "date-time"}
    assert props["word"] == {"type": "string", "description": "pattern: ^(?!bad)[a-z]+$"}
    assert props["plain"] == {"pattern": "^[a-z]+$", "type": "string"}
    assert props["score"] == {"exclusiveMaximum": 1, "minimum": 0, "multipleOf": 0.5, "type": "number"}
    assert props["few"] == {"items": {"type": "integer"}, "maxItems": 3, "minItems": 1, "type": "array"}


def test_single_member_all_of_is_flattened_and_an_escaped_paren_is_no_lookaround() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"allOf": [{"$ref": "#/$defs/A"}], "description": "an A", "default": {}},
            "b": {"type": "string", "pattern": r"^\(?=$"},
        },
        "required": ["a", "b"],
        "$defs": {"A": {"type": "object", "properties": {}}},
    }
    out = to_strict_schema(schema)
    assert strict_violations(out) == []
    assert out["properties"]["a"] == {"anyOf": [{"$ref": "#/$defs/A"}], "description": "an A"}
    assert out["properties"]["b"]["pattern"] == r"^\(?=$"
    assert out["$defs"]["A"] == {"type": "object", "properties": {}, "required": [], "additionalProperties": False}


def test_the_input_is_left_alone() -> None:
    schema = Person.model_json_schema()
    before = copy.deepcopy(schema)
    out = to_strict_schema(schema)
    out["$defs"]["Color"]["enum"].append("blue")
    assert schema == before


# ---------------------------------------------------------------- what strict mode cannot say


def test_a_dict_field_names_the_field_and_the_fix() -> None:
    class Report(BaseModel):
        scores: dict[str, int]

    with pytest.raises(ConfigError) as caught:
        to_strict_schema(Report.model_json_schema())
    message = str(caught.value)
    assert "field 'scores'" in message
    assert "additionalProperties" in message
    assert "#/properties/scores" in message
    assert "OpenAI strict mode" in message
    assert "list of key/value models" in message
    assert "non-strict output mode" in message


def test_a_nested_dict_points_into_its_definition_and_names_the_provider() -> None:
    class Inner(BaseModel):
        extra: dict[str, Any]

    class Outer(BaseModel):
        inner: Inner

    with pytest.raises(ConfigError, match=r"field 'extra'.*#/\$defs/Inner/properties/extra.*azure strict mode"):
        to_strict_schema(Outer.model_json_schema(), provider="azure")


@pytest.mark.parametrize(
    ("annotation", "expected"),
    [
        (list[int], r"root schema is of type \"array\""),
        (Address | Node, r"root schema is a union"),
        (int, r"root schema is of type \"integer\""),
    ],
)
def test_a_root_that_is_not_an_object_is_refused(annotation: Any, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        to_strict_schema(TypeAdapter(annotation).json_schema())


@pytest.mark.parametrize("annotation", [Any, list])
def test_an_untyped_value_is_refused(annotation: Any) -> None:
    model = create_model("Loose", value=(annotation, ...))
    with pytest.raises(ConfigError, match="field 'value' has no type"):
        to_strict_schema(model.model_json_schema())


def test_a_general_all_of_is_refused() -> None:
    schema = {
        "type": "object",
        "properties": {"both": {"allOf": [{"type": "string"}, {"type": "string", "pattern": "a"}]}},
    }
    with pytest.raises(ConfigError, match="field 'both' combines 2 schemas with allOf"):
        to_strict_schema(schema)


def test_the_checker_flags_what_the_transform_fixes() -> None:
    problems = strict_violations(Person.model_json_schema())
    assert any("'additionalProperties' is required" in p for p in problems)
    assert any("'default' is not permitted" in p for p in problems)
    assert any("Missing ['age'" in p for p in problems)


def _add_nulls(value: Any, annotation: Any) -> None:
    """Fill every field the dump left out with null, as a strict-mode answer has it."""
    if get_origin(annotation) is Annotated:
        _add_nulls(value, get_args(annotation)[0])
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel) and isinstance(value, dict):
        for field in annotation.model_fields.values():
            assert field.alias is not None
            if field.alias in value:
                _add_nulls(value[field.alias], field.annotation)
            else:
                value[field.alias] = None
    elif get_origin(annotation) is list:
        for item in value:
            _add_nulls(item, get_args(annotation)[0])
    elif get_origin(annotation) in (Union, types.UnionType) and value is not None:
        for member in get_args(annotation):
            _add_nulls(value, member)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=random_models, data=st.data())
def test_random_models_become_strict_schemas_their_instances_still_match(tree: Tree, data: st.DataObject) -> None:
    assume(tree.depth <= 9)
    schema = tree.annotation.model_json_schema()
    before = copy.deepcopy(schema)
    try:
        out = to_strict_schema(schema)
    except ConfigError:
        assert tree.has_dict
        return
    assert not tree.has_dict
    assert schema == before
    assert strict_violations(out) == []
    instance = data.draw(tree.values)
    answer = instance.model_dump(mode="json", by_alias=True, exclude_unset=True)
    _add_nulls(answer, tree.annotation)
    Draft202012Validator(out).validate(answer)
