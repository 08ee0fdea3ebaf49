"""The YAML reader of recipe files and `--set` values: PyYAML's safe loader, made strict.

Recipes are short files written by hand, so what nobody writes on purpose is refused with one
clear line instead of being read in a surprising way:

- keys are read as their text: `on:` is the key 'on', never the boolean True;
- a key written twice in one mapping is an error naming both lines (PyYAML keeps the last);
- only true/false are booleans and integers are decimal (or 0x.../0b...): the YAML 1.1 words
  yes/no/on/off and forms such as `010` (octal 8) or `1:30` (90) stay text, which the validator
  then reports; `1e-3` is a number, as in YAML 1.2;
- nesting is at most MAX_DEPTH deep and anchors may expand to at most MAX_NODES values (the
  "billion laughs": ten nested anchors that each repeat the previous one ten times), so reading
  always ends quickly; an alias inside its own anchor is refused;
- an alias is read as a copy, so `--set train.epochs=3` never also changes a section that was
  written `teacher: {train: *same}`.

    data = parse_yaml(text)     # raises RefusedYAML (message complete) or another yaml.YAMLError
    text = dump_yaml(data)      # what parse_yaml reads back unchanged (yaml.safe_dump writes '1e3' bare)
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_NODES = 100_000  # values after expanding aliases; the longest recipe in recipes/ has about 100
MAX_DEPTH = 32  # nesting, aliases expanded; recipes nest 5 levels at most
MERGE_TAG = "tag:yaml.org,2002:merge"
BOOL_TAG, INT_TAG, FLOAT_TAG = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"


class RefusedYAML(yaml.YAMLError):
    """Valid YAML that a recipe never needs; the message is complete (the caller adds the source)."""


def parse_yaml(text: str) -> Any:
    """The document in `text` as plain data (dicts with str keys, lists, scalars), a tree with no
    shared parts."""
    loader = RecipeLoader(text)
    try:
        return _tree(loader.get_single_data())
    finally:
        loader.dispose()


class RecipeLoader(yaml.SafeLoader):
    """SafeLoader with text keys, no duplicate keys, YAML 1.2 booleans and bounded aliases."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0
        self.composed = 0  # nodes composed so far, aliases counted once

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        # PyYAML composes recursively: bound the depth before Python's recursion limit is hit
        self.depth += 1
        self.composed += 1
        try:
            if self.composed > MAX_NODES:  # stop early: no need to compose a huge file to refuse it
                raise too_many_values()
            if self.depth > MAX_DEPTH:
                line = self.peek_event().start_mark.line + 1
                raise RefusedYAML(f"nested more than {MAX_DEPTH} levels deep (line {line}); recipes nest a few levels")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def compose_mapping_node(self, anchor: str | None) -> MappingNode:
        node = super().compose_mapping_node(anchor)
        refuse_duplicate_keys(node)
        return node

    def compose_document(self) -> Node:
        node = super().compose_document()
        ExpandedSize().of(node, depth=1)  # before construction, which would build the expansion
        return node

    def construct_mapping(self, node: Node, deep: bool = False) -> dict[str, Any]:
        if not isinstance(node, MappingNode):
            return super().construct_mapping(node, deep=deep)  # raises PyYAML's own error
        self.flatten_mapping(node)  # `<<: *base` merges; the keys written after it win
        return {key_text(key): self.construct_object(value, deep=deep) for key, value in node.value}

    def construct_yaml_int(self, node: ScalarNode) -> int:
        try:
            return super().construct_yaml_int(node)
        except ValueError:  # Python reads at most 4300 digits; `0x_` has none
            line = node.start_mark.line + 1
            if len(node.value) > 4000:
                raise RefusedYAML(f"line {line}: an integer of {len(node.value)} digits is too long") from None
            raise RefusedYAML(f"line {line}: {node.value!r} is not an integer") from None


# YAML 1.2 core-schema booleans, integers and floats replace PyYAML's YAML 1.1 ones.
RecipeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (BOOL_TAG, INT_TAG, FLOAT_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
RecipeLoader.add_implicit_resolver(BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
RecipeLoader.add_implicit_resolver(
    INT_TAG, re.compile(r"^(?:[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?0b[01_]+)$"), list("-+0123456789")
)
RecipeLoader.add_implicit_resolver(
    FLOAT_TAG,
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*\.[0-9_]*|\.[0-9][0-9_]*|[0-9][0-9_]*(?=[eE]))(?:[eE][-+]?[0-9]+)?
            |[-+]?\.(?:inf|Inf|INF)
            |\.(?:nan|NaN|NAN))$""",
        re.VERBOSE,
    ),
    list("-+0123456789."),
)
RecipeLoader.add_constructor(INT_TAG, RecipeLoader.construct_yaml_int)


class RecipeDumper(yaml.SafeDumper):
    """SafeDumper that quotes every string `RecipeLoader` or a YAML 1.1 reader would read as
    something else ('1e3', 'yes', '010')."""


RecipeDumper.yaml_implicit_resolvers = {
    first: yaml.SafeDumper.yaml_implicit_resolvers.get(first, []) + RecipeLoader.yaml_implicit_resolvers.get(first, [])
    for first in {*yaml.SafeDumper.yaml_implicit_resolvers, *RecipeLoader.yaml_implicit_resolvers}
}


def dump_yaml(data: Any) -> str:
    """`data` as YAML that `parse_yaml` reads back unchanged (keys in their order)."""
    return yaml.dump(data, Dumper=RecipeDumper, sort_keys=False)


def key_text(node: Node) -> str:
    """A mapping key as the text written, so `on:`, `1:` and `null:` are the keys 'on', '1', 'null'."""
    if isinstance(node, ScalarNode):
        return node.value
    kind = "list" if isinstance(node, SequenceNode) else "mapping"
    raise RefusedYAML(f"line {node.start_mark.line + 1}: a key must be a word, not a {kind}")


def refuse_duplicate_keys(node: MappingNode) -> None:
    """A key written twice is an error; keys merged in with `<<: *anchor` may be overridden."""
    lines: dict[str, int] = {}
    for key, _ in node.value:
        if key.tag == MERGE_TAG:
            continue
        text, line = key_text(key), key.start_mark.line + 1
        if text in lines:
            raise RefusedYAML(f"key '{text}' appears twice (lines {lines[text]} and {line}); keep one")
        lines[text] = line


class ExpandedSize:
    """Counts the values a composed document expands to, each alias counted in full, without
    expanding it: a node's size is remembered the first time, so the count takes linear time."""

    def __init__(self) -> None:
        self.known: dict[int, tuple[int, int]] = {}  # id(node) -> (values, levels) below and with it
        self.open: set[int] = set()  # nodes whose children are being counted, to catch cycles

    def of(self, node: Node, depth: int) -> int:
        if id(node) in self.open:
            raise RefusedYAML(f"line {node.start_mark.line + 1}: an alias refers to the section that contains it")
        size, levels = self.known.get(id(node)) or self.count(node, depth)
        if depth + levels - 1 > MAX_DEPTH:
            raise RefusedYAML(
                f"aliases nest sections more than {MAX_DEPTH} levels deep (line {node.start_mark.line + 1})"
            )
        return size

    def count(self, node: Node, depth: int) -> tuple[int, int]:
        self.open.add(id(node))
        children = _children(node)
        size, levels = 1, 1
        for child in children:
            size += self.of(child, depth + 1)
            levels = max(levels, self.known[id(child)][1] + 1)
            if size > MAX_NODES:
                raise too_many_values()
        self.open.discard(id(node))
        self.known[id(node)] = (size, levels)
        return size, levels


def _children(node: Node) -> list[Node]:
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]  # keys and values
    return node.value if isinstance(node, SequenceNode) else []


def too_many_values() -> RefusedYAML:
    return RefusedYAML(
        f"too many YAML aliases/nodes (more than {MAX_NODES} values, aliases expanded); "
        "recipes don't need anchors nested like this, nor lists this long"
    )


def _tree(value: Any) -> Any:
    """A copy in which no list or mapping appears twice (an alias shares one object with its anchor)."""
    if isinstance(value, dict):
        return {key: _tree(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_tree(item) for item in value]
    return value
