"""The two Gemini schema dialects: pydantic schemas in, schemas Gemini accepts out (checked independently).

`json_schema_violations` and `openapi_schema_violations` restate PROVIDERS.md §4's rules without the
transforms' code, word them as Gemini's 400s do, and back the request checker in tests/test_gemini.py.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from pydantic import BaseModel, Field, create_model

from robustprompt._errors import ConfigError
from robustprompt.adapters._gemini_schema import to_gemini_json_schema, to_gemini_openapi_schema
from tests.schema_shapes import Address, Color, Node, Tree, random_models

# ---------------------------------------------------------------- the rules, restated

JSON_KEYWORDS = frozenset(
    {"$id", "$defs", "$ref", "$anchor", "type", "format", "title", "description", "enum", "items", "prefixItems"}
    | {"minItems", "maxItems", "minimum", "maximum", "anyOf", "oneOf", "properties", "additionalProperties"}
    | {"required", "propertyOrdering"}
)
OPENAPI_KEYWORDS = frozenset(
    {"type", "format", "description", "nullable", "enum", "items", "minItems", "maxItems", "minLength"}
    | {"maxLength", "pattern", "minimum", "maximum", "properties", "required", "minProperties", "maxProperties"}
    | {"anyOf", "propertyOrdering", "title", "default", "example"}
)
OPENAPI_TYPES = frozenset({"STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"})
OPENAPI_FORMATS = {"STRING": {"enum", "date-time"}, "NUMBER": {"float", "double"}, "INTEGER": {"int32", "int64"}}


def json_schema_violations(schema: Any, where: str = "generation_config.response_json_schema") -> list[str]:
    """What Gemini rejects in a `responseJsonSchema`: keywords off the whitelist, `enum` values that are not
    strings or numbers, `$ref` with siblings, and recursion that never passes an optional property."""
    found = [f"* GenerateContentRequest.{where}{path}: {problem}" for path, problem in _json_problems(schema, "")]
    if isinstance(schema, Mapping):
        found += [f"* GenerateContentRequest.{where}: {p}" for p in _required_cycles(schema, schema, "#", ())]
    return found


def _json_problems(node: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, bool):
        return
    if not isinstance(node, Mapping):
        yield path, f"a schema must be an object, got {node!r}"
        return
    for key in sorted(node.keys() - JSON_KEYWORDS):
        yield path, f"keyword {key!r} is not supported"
    if "$ref" in node and any(not key.startswith("$") for key in node):
        yield path, f"$ref cannot have sibling keywords {sorted(k for k in node if not k.startswith('$'))}"
    for value in node.get("enum", ()):
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            yield f"{path}.enum", f"enum values must be strings or numbers, got {value!r}"
    for key in ("properties", "$defs"):
        for name, sub in node.get(key, {}).items():
            yield from _json_problems(sub, f"{path}.{key}[{name!r}]")
    for key in ("anyOf", "oneOf", "prefixItems"):
        for i, sub in enumerate(node.get(key, ())):
            yield from _json_problems(sub, f"{path}.{key}[{i}]")
    for key in ("items", "additionalProperties"):
        if key in node:
            yield from _json_problems(node[key], f"{path}.{key}")


def _required_cycles(root: Mapping[str, Any], node: Any, here: str, chain: tuple[str, ...]) -> Iterator[str]:
    """Expand `$ref`s along required properties only: coming back to a definition there never ends."""
    if not isinstance(node, Mapping):
        return
    ref = node.get("$ref")
    if isinstance(ref, str):
        if ref in chain:
            yield f"cyclic $ref {ref} is only allowed in non-required properties"
            return
        target: Any = root
        for part in ref.removeprefix("#").split("/")[1:]:
            target = target[part]
        yield from _required_cycles(root, target, ref, (*chain, ref))
    required = set(node.get("required", ()))
    for name, sub in node.get("properties", {}).items():
        if name in required:
            yield from _required_cycles(root, sub, here, chain)
    for sub in [*node.get("anyOf", ()), *node.get("prefixItems", ())]:
        yield from _required_cycles(root, sub, here, chain)
    if isinstance(node.get("items"), Mapping):
        yield from _required_cycles(root, node["items"], here, chain)


def openapi_schema_violations(schema: Any, where: str = "generation_config.response_schema") -> list[str]:
    """What Gemini rejects in a `Schema` (responseSchema, function parameters), worded as its 400s are."""
    return [f"* GenerateContentRequest.{where}{path}: {problem}" for path, problem in _openapi_problems(schema, "")]


def _openapi_problems(node: Any, path: str) -> Iterator[tuple[str, str]]:
    if not isinstance(node, Mapping):
        yield path, f"a schema must be an object, got {node!r}"
        return
    for key in sorted(node.keys() - OPENAPI_KEYWORDS):
        yield path, f'Invalid JSON payload received. Unknown name "{key}": Cannot find field.'
    kind = node.get("type")
    if kind is None and "anyOf" not in node:
        yield f"{path}.type", "must be specified"
    elif kind is not None and kind not in OPENAPI_TYPES:
        yield f"{path}.type", f"Invalid value (type.googleapis.com/google.ai.generativelanguage.v1beta.Type), {kind!r}"
    if "enum" in node:
        if kind != "STRING":
            yield f"{path}.enum", "only allowed for STRING type"
        if not all(isinstance(v, str) for v in node["enum"]):
            yield f"{path}.enum", "values must be strings"
    if "format" in node and node["format"] not in OPENAPI_FORMATS.get(kind or "", ()):
        yield f"{path}.format", f"format {node['format']!r} is not supported for type {kind}"
    if kind == "OBJECT":
        yield from _object_problems(node, path)
    if kind == "ARRAY" and "items" not in node:
        yield f"{path}.items", "missing field"
    for name, sub in node.get("properties", {}).items():
        yield from _openapi_problems(sub, f"{path}.properties[{name!r}]")
    for i, sub in enumerate(node.get("anyOf", ())):
        yield from _openapi_problems(sub, f"{path}.any_of[{i}]")
    if "items" in node:
        yield from _openapi_problems(node["items"], f"{path}.items")


def _object_problems(node: Mapping[str, Any], path: str) -> Iterator[tuple[str, str]]:
    properties = node.get("properties") or {}
    if not properties:
        yield f"{path}.properties", "should be non-empty for OBJECT type"
    for name in node.get("required", ()):
        if name not in properties:
            yield f"{path}.required[{name!r}]", "property is not defined"
    ordering = node.get("propertyOrdering")
    if ordering is not None and sorted(ordering) != sorted(properties):
        yield f"{path}.property_ordering", "must list each property exactly once"


def openapi_as_json_schema(node: Any) -> Any:
    """The JSON Schema that means what a Gemini `Schema` means, to validate instances against it."""
    if not isinstance(node, Mapping):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "type":
            out[key] = value.lower()
        elif key == "properties":
            out[key] = {name: openapi_as_json_schema(sub) for name, sub in value.items()}
        elif key == "anyOf":
            out[key] = [openapi_as_json_schema(sub) for sub in value]
        elif key == "items":
            out[key] = openapi_as_json_schema(value)
        elif key not in ("nullable", "propertyOrdering", "format"):
            out[key] = value
    if node.get("nullable"):
        out = {"anyOf": [out, {"type": "null"}]}
    return out


# ---------------------------------------------------------------- fixtures


def as_json(model: type[BaseModel]) -> dict[str, Any]:
    out = to_gemini_json_schema(model.model_json_schema())
    assert json_schema_violations(out) == []
    Draft202012Validator.check_schema(out)
    return out


def as_openapi(model: type[BaseModel]) -> dict[str, Any]:
    out = to_gemini_openapi_schema(model.model_json_schema())
    assert openapi_schema_violations(out) == []
    return out


class Person(BaseModel):
    name: str = Field(description="Full name")
    age: int | None = Field(default=None, ge=0, le=150)
    home: Address = Field(description="Where they live")
    previous: list[Address] = []
    color: Color = Color.RED
    tag: Literal["person"]
    when: str = Field(json_schema_extra={"format": "date-time"})


class Chain(BaseModel):
    value: int
    next: Chain | None


class Report(BaseModel):
    scores: dict[str, int]


# ---------------------------------------------------------------- responseJsonSchema


def test_json_schema_keeps_the_shape_and_drops_titles_and_defaults() -> None:
    out = as_json(Person)
    assert out["required"] == ["name", "home", "tag", "when"]
    assert list(out["properties"]) == list(Person.model_fields)
    assert "'title'" not in repr(out) and "'default'" not in repr(out)
    assert out["properties"]["age"] == {"anyOf": [{"maximum": 150, "minimum": 0, "type": "integer"}, {"type": "null"}]}


def test_json_schema_ref_with_a_description_is_wrapped_in_any_of() -> None:
    assert as_json(Person)["properties"]["home"] == {
        "anyOf": [{"$ref": "#/$defs/Address"}],
        "description": "Where they live",
    }


def test_json_schema_const_becomes_an_enum_and_string_formats_a_note() -> None:
    props = as_json(Person)["properties"]
    assert props["tag"] == {"enum": ["person"], "type": "string"}
    assert props["when"] == {"type": "string", "description": "format: date-time"}


def test_json_schema_enums_take_strings_and_numbers_only() -> None:
    class Choice(BaseModel):
        word: Literal["x", None]
        number: Literal[1, 2]
        flag: Literal[True]

    props = as_json(Choice)["properties"]
    assert props["word"] == {"anyOf": [{"enum": ["x"]}, {"type": "null"}]}
    assert props["number"] == {"enum": [1, 2], "type": "integer"}
    assert props["flag"] == {"type": "boolean", "description": "const: true"}


def test_json_schema_unsupported_constraints_move_into_the_description() -> None:
    class Form(BaseModel):
        user: str = Field(min_length=3, max_length=10, description="Login")
        plain: str = Field(pattern="^[a-z]+$")
        score: float = Field(gt=0, multiple_of=0.5)
        ids: set[int]

    props = as_json(Form)["properties"]
    assert props["user"] == {"description": "Login (maxLength: 10; minLength: 3)", "type": "string"}
    assert props["plain"] == {"type": "string", "description": "pattern: ^[a-z]+$"}
    assert props["score"] == {"type": "number", "description": "exclusiveMinimum: 0; multipleOf: 0.5"}
    assert props["ids"]["description"] == "uniqueItems: true"


def test_json_schema_takes_dicts_tuples_and_any() -> None:
    class Loose(BaseModel):
        scores: dict[str, int]
        pair: tuple[int, str]
        anything: Any

    props = as_json(Loose)["properties"]
    assert props["scores"] == {"additionalProperties": {"type": "integer"}, "type": "object"}
    assert props["pair"]["prefixItems"] == [{"type": "integer"}, {"type": "string"}]
    assert props["anything"] == {}


def test_json_schema_recursion_through_an_optional_field_is_kept() -> None:
    out = as_json(Node)
    assert out["$ref"] == "#/$defs/Node"  # a root $ref with $defs beside it: only $ keywords, so allowed
    assert out["$defs"]["Node"]["properties"]["children"]["items"] == {"$ref": "#/$defs/Node"}


def test_json_schema_recursion_through_a_required_field_is_refused_with_the_fix() -> None:
    assert json_schema_violations(Chain.model_json_schema()) != []  # the checker agrees it cannot pass
    with pytest.raises(ConfigError) as caught:
        to_gemini_json_schema(Chain.model_json_schema())
    message = str(caught.value)
    assert "field 'next' is required" in message
    assert "#/$defs/Chain/properties/next/anyOf/0" in message
    assert "Gemini's responseJsonSchema" in message
    assert "give the field a default" in message


def test_json_schema_a_cycle_through_two_models_names_the_required_field() -> None:
    schema = {
        "$defs": {
            "A": {"type": "object", "properties": {"b": {"$ref": "#/$defs/B"}}, "required": ["b"]},
            "B": {"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}, "required": []},
        },
        "$ref": "#/$defs/A",
    }
    with pytest.raises(ConfigError, match=r"field 'b' is required, and its type 'B' leads back to 'A'"):
        to_gemini_json_schema(schema)


def test_json_schema_a_general_all_of_is_refused_and_a_single_one_merged() -> None:
    single = {"type": "object", "properties": {"a": {"allOf": [{"type": "string"}], "description": "d"}}}
    assert to_gemini_json_schema(single)["properties"]["a"] == {"type": "string", "description": "d"}
    both = {"type": "object", "properties": {"a": {"allOf": [{"type": "string"}, {"minLength": 1}]}}}
    with pytest.raises(ConfigError, match="field 'a' combines 2 schemas with allOf"):
        to_gemini_json_schema(both)


# ---------------------------------------------------------------- the OpenAPI subset


def test_openapi_types_are_upper_case_and_refs_inlined_with_their_annotations() -> None:
    out = as_openapi(Person)
    assert out["type"] == "OBJECT"
    assert out["propertyOrdering"] == list(Person.model_fields)
    assert out["properties"]["home"] == {
        "properties": {"street": {"type": "STRING"}, "city": {"type": "STRING"}},
        "propertyOrdering": ["street", "city"],
        "required": ["street"],
        "type": "OBJECT",
        "description": "Where they live",
    }
    assert "$ref" not in repr(out) and "$defs" not in repr(out)


def test_openapi_unions_with_null_become_nullable() -> None:
    props = as_openapi(Person)["properties"]
    assert props["age"] == {"maximum": 150, "minimum": 0, "type": "INTEGER", "nullable": True}
    assert props["color"] == {"enum": ["red", "green"], "type": "STRING"}


def test_openapi_enums_take_strings_only_and_const_is_a_one_value_enum() -> None:
    class Choice(BaseModel):
        word: Literal["x", None]
        number: Literal[1, 2]
        tag: Literal["only"]

    props = as_openapi(Choice)["properties"]
    assert props["word"] == {"nullable": True, "type": "STRING", "enum": ["x"]}
    assert props["number"] == {"type": "INTEGER", "description": "enum: [1, 2]"}
    assert props["tag"] == {"type": "STRING", "enum": ["only"]}


def test_openapi_keeps_string_bounds_and_notes_what_it_lacks() -> None:
    class Form(BaseModel):
        user: str = Field(min_length=3, max_length=10, pattern="^[a-z]+$")
        score: float = Field(gt=0, le=1)
        when: str = Field(json_schema_extra={"format": "date-time"})
        site: str = Field(json_schema_extra={"format": "uri"})
        pair: tuple[int, str]

    props = as_openapi(Form)["properties"]
    assert props["user"] == {"maxLength": 10, "minLength": 3, "pattern": "^[a-z]+$", "type": "STRING"}
    assert props["score"] == {"maximum": 1, "type": "NUMBER", "description": "exclusiveMinimum: 0"}
    assert props["when"] == {"format": "date-time", "type": "STRING"}
    assert props["site"] == {"type": "STRING", "description": "format: uri"}
    assert props["pair"]["items"] == {"anyOf": [{"type": "INTEGER"}, {"type": "STRING"}]}
    assert props["pair"]["minItems"] == props["pair"]["maxItems"] == 2


def test_openapi_discriminated_union_becomes_any_of() -> None:
    class Cat(BaseModel):
        pet: Literal["cat"]

    class Dog(BaseModel):
        pet: Literal["dog"]

    class Owner(BaseModel):
        animal: Annotated[Cat | Dog, Field(discriminator="pet")]

    animal = as_openapi(Owner)["properties"]["animal"]
    assert [member["properties"]["pet"]["enum"] for member in animal["anyOf"]] == [["cat"], ["dog"]]


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (Node, r"field 'children' refers back to 'Node' \(a recursive model\).*recursion \(it has no \$ref\)"),
        (Report, r"field 'scores' is a dict\[str, \.\.\.\].*free-form objects.*list of key/value models"),
        (create_model("Loose", value=(Any, ...)), r"field 'value' has no type"),
        (create_model("Hollow", inner=(create_model("Empty"), ...)), r"field 'inner' is an object with no fields"),
    ],
)
def test_openapi_refuses_what_it_cannot_say(model: type[BaseModel], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected) as caught:
        to_gemini_openapi_schema(model.model_json_schema())
    assert "Gemini's schema subset" in str(caught.value)


def test_the_inputs_are_left_alone() -> None:
    schema = Person.model_json_schema()
    before = copy.deepcopy(schema)
    to_gemini_json_schema(schema)["$defs"]["Address"]["required"].append("zip")
    to_gemini_openapi_schema(schema)["properties"]["home"]["required"].append("zip")
    assert schema == before


def test_the_checkers_flag_what_the_transforms_fix() -> None:
    raw = Person.model_json_schema()
    assert any("'default' is not supported" in p for p in json_schema_violations(raw))
    assert any("$ref cannot have sibling" in p for p in json_schema_violations(raw))
    assert any('Unknown name "$ref"' in p for p in openapi_schema_violations(raw))
    assert any("Invalid value" in p for p in openapi_schema_violations(raw))


# ---------------------------------------------------------------- random models


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=random_models, data=st.data())
def test_random_models_fit_the_json_dialect_and_their_instances_still_match(tree: Tree, data: st.DataObject) -> None:
    schema = tree.annotation.model_json_schema()
    before = copy.deepcopy(schema)
    out = to_gemini_json_schema(schema)
    assert schema == before
    assert json_schema_violations(out) == []
    answer = data.draw(tree.values).model_dump(mode="json", by_alias=True, exclude_unset=True)
    Draft202012Validator(out).validate(answer)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=random_models, data=st.data())
def test_random_models_fit_the_openapi_subset_unless_they_hold_a_dict(tree: Tree, data: st.DataObject) -> None:
    schema = tree.annotation.model_json_schema()
    if tree.has_dict or any(_is_empty_object(node) for node in _walk(schema)):
        with pytest.raises(ConfigError, match=r"dict\[str|no fields"):
            to_gemini_openapi_schema(schema)
        return
    out = to_gemini_openapi_schema(schema)
    assert openapi_schema_violations(out) == []
    answer = data.draw(tree.values).model_dump(mode="json", by_alias=True, exclude_unset=True)
    Draft202012Validator(openapi_as_json_schema(out)).validate(answer)


def _walk(node: Any) -> Iterator[Any]:
    yield node
    children = node.values() if isinstance(node, Mapping) else node if isinstance(node, list) else ()
    for child in children:
        yield from _walk(child)


def _is_empty_object(node: Any) -> bool:
    return isinstance(node, Mapping) and node.get("type") == "object" and not node.get("properties")
