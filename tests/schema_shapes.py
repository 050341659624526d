"""Models every schema-dialect test transforms (nesting, optional fields, defaults, enums, literals, recursion),
and a Hypothesis strategy of random pydantic models with values for them."""

from __future__ import annotations

import enum
import itertools
import string
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from hypothesis import strategies as st
from pydantic import BaseModel, Field, create_model


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Address(BaseModel):
    street: str
    city: str = "Paris"


class Person(BaseModel):
    name: str = Field(description="Full name")
    age: int | None = None
    nickname: str | None
    address: Address
    previous: list[Address] = []
    color: Color = Color.RED
    kind: Literal["a", "b"] = "a"
    tag: Literal["person"]


class Node(BaseModel):
    value: int
    children: list[Node] = []


# Random models: a type tree with a strategy for its values, for property tests of every schema dialect.


@dataclass(frozen=True)
class Tree:
    """A random type with a strategy for its values."""

    annotation: Any
    values: st.SearchStrategy[Any]
    has_dict: bool = False
    depth: int = 0  # levels of nested models


_names = itertools.count()
_letters = st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=4)
# Wire names that look like schema keywords or need escaping in a JSON pointer.
# ("$ref" is left out: pydantic's own schema generator trips on a property of that name.)
_field_names = _letters | st.sampled_from(["properties", "items", "type", "required", "a/b", "x~y", "a b"])


def _literal(values: list[str]) -> Tree:
    return Tree(Literal[tuple(values)], st.sampled_from(values))


def _enum(values: list[str]) -> Tree:
    kind = enum.Enum(f"E{next(_names)}", {value.upper(): value for value in values})  # type: ignore[misc]
    return Tree(kind, st.sampled_from(list(kind)))


def _bounded_str(low: int, extra: int) -> Tree:
    annotation = Annotated[str, Field(min_length=low, max_length=low + extra)]
    return Tree(annotation, st.text(min_size=low, max_size=low + extra))


def _bounded_int(low: int, extra: int) -> Tree:
    return Tree(Annotated[int, Field(ge=low, le=low + extra)], st.integers(low, low + extra))


_leaves = st.one_of(
    st.just(Tree(str, st.text(max_size=5))),
    st.builds(_bounded_str, st.integers(0, 3), st.integers(0, 3)),
    st.just(Tree(int, st.integers())),
    st.builds(_bounded_int, st.integers(-5, 5), st.integers(0, 10)),
    st.just(Tree(float, st.floats(allow_nan=False, allow_infinity=False))),
    st.just(Tree(bool, st.booleans())),
    st.lists(_letters, min_size=1, max_size=4, unique=True).map(_literal),
    st.lists(_letters, min_size=1, max_size=4, unique=True).map(_enum),
    st.just(Tree(dict[str, int], st.dictionaries(_letters, st.integers(), max_size=2), has_dict=True)),
)


def _optional(child: Tree) -> Tree:
    return Tree(child.annotation | None, st.none() | child.values, child.has_dict, child.depth)


def _list(child: Tree, low: int) -> Tree:
    annotation = Annotated[list[child.annotation], Field(min_length=low)]  # type: ignore[name-defined]
    return Tree(annotation, st.lists(child.values, min_size=low, max_size=low + 2), child.has_dict, child.depth)


@st.composite
def _model(draw: st.DrawFn, children: st.SearchStrategy[Tree]) -> Tree:
    fields: dict[str, Any] = {}
    required: dict[str, st.SearchStrategy[Any]] = {}
    optional: dict[str, st.SearchStrategy[Any]] = {}
    trees = []
    for i, name in enumerate(draw(st.lists(_field_names, max_size=4, unique=True))):
        tree = draw(children)
        trees.append(tree)
        if draw(st.booleans()):
            fields[f"f{i}"] = (tree.annotation, Field(default=draw(tree.values), alias=name))
            optional[name] = tree.values
        else:
            fields[f"f{i}"] = (tree.annotation, Field(alias=name))
            required[name] = tree.values
    model = create_model(f"M{next(_names)}", **fields)
    values = st.fixed_dictionaries(required, optional=optional).map(lambda kwargs: model(**kwargs))
    depth = 1 + max((tree.depth for tree in trees), default=0)
    return Tree(model, values, any(tree.has_dict for tree in trees), depth)


def _extend(children: st.SearchStrategy[Tree]) -> st.SearchStrategy[Tree]:
    return st.one_of(
        children.map(_optional),
        st.builds(_list, children, st.integers(0, 2)),
        _model(children),
    )


random_models = _model(st.recursive(_leaves, _extend, max_leaves=6))
