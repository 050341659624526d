"""to_anthropic_schema: pydantic schemas in, schemas Anthropic's structured outputs accept out.

The dialect checker below is written from PROVIDERS.md §3 (the SDK's `transform_schema` plus the documented
limits), independently of the transform; the body checker in test_anthropic.py uses it as the server would.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from pydantic import BaseModel, Field, TypeAdapter, create_model

from robustprompt._errors import ConfigError
from robustprompt.adapters._anthropic_schema import to_anthropic_schema, tool_input_schema
from tests.schema_shapes import Address, Node, Person, Tree, random_models
from tests.spec_check import _nodes

# ---------------------------------------------------------------- the dialect, from PROVIDERS.md §3

_ALLOWED = frozenset(
    {"type", "enum", "anyOf", "allOf", "description", "title", "properties", "required", "additionalProperties"}
    | {"$defs", "definitions", "$ref", "format", "items", "minItems"}
)
_FORMATS = frozenset({"date-time", "time", "date", "duration", "email", "hostname", "uri", "ipv4", "ipv6", "uuid"})
_TYPE_KEYS = frozenset({"type", "enum", "anyOf", "allOf", "$ref"})
MAX_OPTIONAL_PARAMETERS = 24
MAX_UNION_PARAMETERS = 16


def anthropic_schema_violations(schema: Any) -> list[str]:
    """Every way `schema` breaks the structured-output dialect or its complexity limits."""
    return dialect_violations(schema) + limit_violations(schema)


def dialect_violations(schema: Any) -> list[str]:
    if not isinstance(schema, Mapping):
        return ["schema must be an object"]
    found = [f"{_pointer(path)}: {problem}" for path, node in _nodes(schema, ()) for problem in _problems(node, schema)]
    return found + _cycles(schema)


def limit_violations(schema: Mapping[str, Any]) -> list[str]:
    """The per-request limits (PROVIDERS.md §3), which the server enforces when it compiles the grammar."""
    nodes = [node for _, node in _nodes(schema, ()) if isinstance(node, dict)]
    optional = sum(len(set(node.get("properties", {})) - set(node.get("required", ()))) for node in nodes)
    unions = sum(
        1
        for node in nodes
        for prop in node.get("properties", {}).values()
        if isinstance(prop, dict) and ("anyOf" in prop or isinstance(prop.get("type"), list))
    )
    found = []
    if optional > MAX_OPTIONAL_PARAMETERS:
        found.append(f"Schema is too complex for compilation: {optional} optional parameters (limit 24)")
    if unions > MAX_UNION_PARAMETERS:
        found.append(f"Schema is too complex for compilation: {unions} parameters use anyOf or type arrays (limit 16)")
    return found


def _problems(node: Any, root: Mapping[str, Any]) -> Iterator[str]:
    if not isinstance(node, dict):
        yield f"schema must be an object, not {node!r}"
        return
    for key in sorted(node.keys() - _ALLOWED):
        yield f"'{key}' is not supported"
    if not node.keys() & _TYPE_KEYS:
        yield "Schema type is missing"
    if "$ref" in node:
        yield from _ref_problems(node, root)
    kind = node.get("type")
    if kind == "object" or (isinstance(kind, list) and "object" in kind):
        if node.get("additionalProperties") is not False:
            yield "For 'object' type, 'additionalProperties' must be explicitly set to false"
        for name in node.get("required", ()):
            if name not in node.get("properties", {}):
                yield f"required property {name!r} is not defined in properties"
    if "format" in node and node["format"] not in _FORMATS:
        yield f"format {node['format']!r} is not supported"
    if "minItems" in node and node["minItems"] not in (0, 1):
        yield f"minItems: {node['minItems']} is not supported (only 0 or 1)"
    if any(isinstance(value, (dict, list)) for value in node.get("enum", ())):
        yield "enum values must be strings, numbers, booleans or null"
    if any(isinstance(member, dict) and "$ref" in member for member in node.get("allOf", ())):
        yield "allOf with $ref is not supported"


def _ref_problems(node: dict[str, Any], root: Mapping[str, Any]) -> Iterator[str]:
    ref = node["$ref"]
    if len(node) > 1:
        yield f"'$ref' cannot have sibling keywords {sorted(set(node) - {'$ref'})}"
    if not isinstance(ref, str) or not ref.startswith("#/"):
        yield f"external $ref {ref!r} is not supported"
    elif _target(root, ref) is None:
        yield f"$ref {ref!r} cannot be resolved"


def _target(root: Mapping[str, Any], ref: str) -> Any:
    target: Any = root
    for part in ref[2:].split("/"):
        target = target.get(part.replace("~1", "/").replace("~0", "~")) if isinstance(target, Mapping) else None
    return target


def _refs_in(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            elif key not in ("$defs", "definitions"):
                yield from _refs_in(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs_in(item)


def _cycles(root: Mapping[str, Any]) -> list[str]:
    graph = {"#": set(_refs_in(root))}
    for key in ("$defs", "definitions"):
        for name, sub in root.get(key, {}).items():
            graph[f"#/{key}/{name}"] = set(_refs_in(sub))
    state: dict[str, str] = {}
    found: list[str] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append(f"recursive schemas are not supported: {' -> '.join([*trail, nxt])}")
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = "done"

    for node in graph:
        if node not in state:
            visit(node, [node])
    return found


def _pointer(path: tuple[Any, ...]) -> str:
    return "#" + "".join(f"/{part}" for part in path)


def anthropic(model: type[BaseModel]) -> dict[str, Any]:
    out = to_anthropic_schema(model.model_json_schema())
    assert anthropic_schema_violations(out) == []
    Draft202012Validator.check_schema(out)
    return out


# ---------------------------------------------------------------- shapes


def test_objects_are_closed_and_optional_fields_stay_optional() -> None:
    out = anthropic(Person)
    assert out["additionalProperties"] is False
    assert out["required"] == ["name", "nickname", "address", "tag"]
    assert out["$defs"]["Address"] == {
        "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        "required": ["street"],
        "type": "object",
        "additionalProperties": False,
    }
    assert out["properties"]["age"] == {"anyOf": [{"type": "integer"}, {"type": "null"}]}


def test_titles_and_defaults_are_dropped() -> None:
    text = repr(anthropic(Person))
    assert "'title'" not in text
    assert "'default'" not in text


def test_enums_stay_and_const_becomes_a_one_value_enum() -> None:
    out = anthropic(Person)
    assert out["$defs"]["Color"] == {"enum": ["red", "green"], "type": "string"}
    assert out["properties"]["color"] == {"$ref": "#/$defs/Color"}
    assert out["properties"]["kind"] == {"enum": ["a", "b"], "type": "string"}
    assert out["properties"]["tag"] == {"enum": ["person"], "type": "string"}


def test_list_of_models_keeps_its_reference() -> None:
    assert anthropic(Person)["properties"]["previous"] == {"items": {"$ref": "#/$defs/Address"}, "type": "array"}


def test_a_reference_with_a_description_is_inlined_and_unused_definitions_go() -> None:
    class Order(BaseModel):
        ship_to: Address = Field(description="Where to ship")

    assert Order.model_json_schema()["properties"]["ship_to"].keys() == {"$ref", "description"}
    out = anthropic(Order)
    assert out["properties"]["ship_to"]["description"] == "Where to ship"
    assert out["properties"]["ship_to"]["required"] == ["street"]
    assert "$defs" not in out


def test_single_member_all_of_around_a_reference_is_inlined() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"allOf": [{"$ref": "#/$defs/A"}], "description": "an A", "default": {}}},
        "required": ["a"],
        "$defs": {"A": {"type": "object", "properties": {"x": {"type": "integer"}}}},
    }
    out = to_anthropic_schema(schema)
    assert dialect_violations(out) == []
    assert out["properties"]["a"] == {
        "type": "object",
        "properties": {"x": {"type": "integer"}},
        "description": "an A",
        "additionalProperties": False,
    }


def test_discriminated_union_becomes_any_of() -> None:
    class Cat(BaseModel):
        pet: Literal["cat"]

    class Dog(BaseModel):
        pet: Literal["dog"]

    class Owner(BaseModel):
        animal: Annotated[Cat | Dog, Field(discriminator="pet")]

    assert "oneOf" in Owner.model_json_schema()["properties"]["animal"]
    assert anthropic(Owner)["properties"]["animal"] == {"anyOf": [{"$ref": "#/$defs/Cat"}, {"$ref": "#/$defs/Dog"}]}


def test_unsupported_constraints_move_into_the_description() -> None:
    class Form(BaseModel):
        user: str = Field(min_length=3, max_length=10, description="Login")
        plain: str = Field(pattern="^[a-z]+$")
        site: str = Field(json_schema_extra={"format": "uri"})
        odd: str = Field(json_schema_extra={"format": "iri"})
        score: float = Field(ge=0, lt=1, multiple_of=0.5)
        some: list[int] = Field(min_length=1)
        many: list[int] = Field(min_length=2, max_length=3)
        ids: set[int]
        pair: tuple[int, str]

    props = anthropic(Form)["properties"]
    assert props["user"] == {"description": "Login (maxLength: 10; minLength: 3)", "type": "string"}
    assert props["plain"] == {"type": "string", "description": "pattern: ^[a-z]+$"}
    assert props["site"] == {"type": "string", "format": "uri"}
    assert props["odd"] == {"type": "string", "description": "format: iri"}
    assert props["score"]["description"] == "exclusiveMaximum: 1; minimum: 0; multipleOf: 0.5"
    assert props["some"] == {"items": {"type": "integer"}, "minItems": 1, "type": "array"}
    assert props["many"]["description"] == "maxItems: 3; minItems: 2"
    assert props["ids"]["description"] == "uniqueItems: true"
    assert "prefixItems" in props["pair"]["description"]


def test_the_input_is_left_alone() -> None:
    schema = Person.model_json_schema()
    before = copy.deepcopy(schema)
    out = to_anthropic_schema(schema)
    out["$defs"]["Color"]["enum"].append("blue")
    assert schema == before


# ---------------------------------------------------------------- what the dialect cannot say


def test_a_recursive_model_names_the_field_the_provider_and_the_fixes() -> None:
    with pytest.raises(ConfigError) as caught:
        to_anthropic_schema(Node.model_json_schema())
    message = str(caught.value)
    assert "field 'children' refers back to 'Node' (a recursive model)" in message
    assert "#/$defs/Node/properties/children/items" in message
    assert "Anthropic structured outputs cannot express recursive schemas" in message
    assert "tool_call or prompted output mode" in message


def test_mutual_recursion_is_found_too() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"$ref": "#/$defs/A"}},
        "$defs": {
            "A": {"type": "object", "properties": {"b": {"$ref": "#/$defs/B"}}},
            "B": {"type": "object", "properties": {"a": {"anyOf": [{"$ref": "#/$defs/A"}, {"type": "null"}]}}},
        },
    }
    with pytest.raises(ConfigError, match=r"field 'a' refers back to 'A'.*#/\$defs/B/properties/a/anyOf/0"):
        to_anthropic_schema(schema, provider="bedrock")


def test_a_dict_field_names_the_fix() -> None:
    class Report(BaseModel):
        scores: dict[str, int]

    with pytest.raises(ConfigError, match=r"field 'scores' is a dict.*#/properties/scores.*list of key/value models"):
        to_anthropic_schema(Report.model_json_schema())


@pytest.mark.parametrize("annotation", [Any, list])
def test_an_untyped_value_is_refused(annotation: Any) -> None:
    model = create_model("Loose", value=(annotation, ...))
    with pytest.raises(ConfigError, match="field 'value' has no type"):
        to_anthropic_schema(model.model_json_schema())


def test_external_and_dangling_references_are_refused() -> None:
    external = {"type": "object", "properties": {"a": {"$ref": "https://example.com/a.json"}}}
    with pytest.raises(ConfigError, match=r"outside the schema.*external references"):
        to_anthropic_schema(external)
    dangling = {"type": "object", "properties": {"a": {"$ref": "#/$defs/Missing"}}}
    with pytest.raises(ConfigError, match="does not exist"):
        to_anthropic_schema(dangling)


def test_a_general_all_of_is_refused() -> None:
    schema = {"type": "object", "properties": {"both": {"allOf": [{"type": "string"}, {"type": "string"}]}}}
    with pytest.raises(ConfigError, match="field 'both' combines 2 schemas with allOf"):
        to_anthropic_schema(schema)


def test_the_checker_flags_what_the_transform_fixes() -> None:
    problems = dialect_violations(Person.model_json_schema() | {"$defs": {"Node": Node.model_json_schema()}})
    assert any("'additionalProperties' must be explicitly set to false" in p for p in problems)
    assert any("'default' is not supported" in p for p in problems)
    assert any("'const' is not supported" in p for p in problems)
    assert any("recursive schemas are not supported" in p for p in problems)


# ---------------------------------------------------------------- tool input


def test_tool_input_keeps_the_schema_whole_and_allows_recursion() -> None:
    schema = Node.model_json_schema()
    out = tool_input_schema(schema)
    assert out["type"] == "object" and "$ref" not in out
    assert out["properties"]["children"]["items"] == {"$ref": "#/$defs/Node"}
    Draft202012Validator(out).validate({"value": 1, "children": [{"value": 2}]})


def test_tool_input_needs_an_object_root() -> None:
    with pytest.raises(ConfigError, match="tool input must be an object"):
        tool_input_schema(TypeAdapter(list[int]).json_schema())


# ---------------------------------------------------------------- random models


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=random_models, data=st.data())
def test_random_models_become_dialect_schemas_their_instances_still_match(tree: Tree, data: st.DataObject) -> None:
    schema = tree.annotation.model_json_schema()
    before = copy.deepcopy(schema)
    try:
        out = to_anthropic_schema(schema)
    except ConfigError:
        assert tree.has_dict
        return
    assert not tree.has_dict
    assert schema == before
    assert dialect_violations(out) == []
    assert to_anthropic_schema(out) == out  # a second pass finds nothing left to change
    instance = data.draw(tree.values)
    Draft202012Validator(out).validate(instance.model_dump(mode="json", by_alias=True, exclude_unset=True))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=random_models, data=st.data())
def test_random_models_as_tool_input_accept_their_instances(tree: Tree, data: st.DataObject) -> None:
    out = tool_input_schema(tree.annotation.model_json_schema())
    Draft202012Validator.check_schema(out)
    instance = data.draw(tree.values)
    Draft202012Validator(out).validate(instance.model_dump(mode="json", by_alias=True, exclude_unset=True))
