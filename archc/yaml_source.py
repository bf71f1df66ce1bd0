"""Reading YAML safely, keeping the line of every value so errors can point at it.

PyYAML's ``safe_load`` forgets where values came from, silently keeps the last of two duplicate keys,
expands aliases and merge keys without bound, recurses once per level of nesting and reads scalars by
YAML 1.1 (``040`` is 32, ``3:44`` is 224, ``yes`` is true, ``1e-5`` is a string). We compose the node graph
with a loader that counts nodes and depth as it goes and resolves scalars by the YAML 1.2 core schema,
then build the Python values ourselves (merges included), counting every value we make.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import yaml

from .errors import SpecError, format_path

MAX_BYTES = 1024 * 1024  # a spec is a page of text (EfficientNet-B0's is 2 KB); anything bigger is not a spec
MAX_NODES = 100_000  # bounds alias ("billion laughs") and merge-key expansion, and huge flow lists
MAX_DEPTH = 64
MAX_DIGITS = 100  # a spec's integers are channels and sizes; Python refuses past 4300 digits with a ValueError

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"

Path = tuple  # a path into the document: ("stages", 3, "stride")


@dataclass(frozen=True)
class Source:
    """Where a spec came from: its file name (as given, for messages) and the line of each path."""

    file: str
    text: str = ""
    lines: dict = field(default_factory=dict, compare=False)
    origins: dict = field(default_factory=dict, compare=False)  # path -> the override that set it
    notes: list = field(default_factory=list, compare=False)  # what a user should know, e.g. which file was read
    applied: dict = field(default_factory=dict, compare=False)  # path -> value of each override applied over the text (re-reading keeps them)

    def locate(self, path: Path) -> tuple[str, int | None]:
        """(file, line) of ``path``; for a value set by an override, (the override, None)."""
        for end in range(len(path), 0, -1):
            prefix = path[:end]
            if prefix in self.origins:
                return self.origins[prefix], None
            if prefix not in self.lines:  # not in the file: made by an override deeper down (`--set a.b.c=1`)?
                for set_path, origin in self.origins.items():
                    if set_path[:end] == prefix:
                        return origin, None
        return self.file, self.line_of(path)

    def line_of(self, path: Path) -> int | None:
        """Line of ``path``, or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return None

    def known_prefix(self, path: Path) -> Path:
        """The longest prefix of ``path`` that the document actually contains."""
        for end in range(len(path), -1, -1):
            if path[:end] in self.lines:
                return path[:end]
        return ()


def read_yaml(text: str | bytes, file: str) -> tuple[object, Source]:
    """Parse one YAML document into plain Python values and a :class:`Source` of line numbers."""
    if isinstance(text, bytes):
        if len(text) > MAX_BYTES:
            raise SpecError(f"file is {len(text):,} bytes; a spec may be at most {MAX_BYTES:,}", file=file)
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SpecError(f"not UTF-8 text (byte {exc.start}); a spec is a YAML text file", file=file) from None
    if len(text) > MAX_BYTES:
        raise SpecError(f"file is {len(text):,} characters; a spec may be at most {MAX_BYTES:,}", file=file)
    if "\x00" in text:
        raise SpecError("binary data (a NUL byte); a spec is a YAML text file", file=file)

    loader = None
    try:
        loader = _Loader(text, file)  # checks the characters already: inside the try
        node = loader.get_single_node()
        if node is None:
            raise SpecError("the file is empty; a spec is a mapping with at least 'name' and 'stages'", file=file, line=1)
        builder = _Builder(loader, file)
        value = builder.build(node, (), 0)
    except yaml.reader.ReaderError as exc:  # a control character: PyYAML gives an offset, not a line
        line = text[: exc.position].count("\n") + 1
        raise SpecError(f"invalid character U+{exc.character:04X}: control characters are not allowed in YAML", file=file, line=line) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise SpecError(f"invalid YAML: {_syntax_message(exc)}", file=file, line=mark.line + 1 if mark else None,
                        column=mark.column + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"invalid YAML: {exc}", file=file) from None
    finally:
        if loader is not None:
            loader.dispose()
    return value, Source(file=file, text=text, lines=builder.lines)


def _at(mark) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


def _syntax_message(exc: yaml.MarkedYAMLError) -> str:
    """PyYAML's words for a syntax error, then what usually causes it and where to look (the opening bracket or
    quote, the line whose indentation it measured against)."""
    problem = exc.problem or exc.context or "invalid YAML"
    opened = exc.context_mark
    hint = None
    if problem.startswith(("expected ',' or '}'", "expected ',' or ']'")) and opened is not None:
        bracket, close = ("{", "}") if "}" in problem else ("[", "]")
        hint = f"the {bracket} at {_at(opened)} is not closed: end it with {close}, and separate its items with commas"
    elif problem == "found unexpected end of stream" and "quoted" in (exc.context or "") and opened is not None:
        hint = f"the quote at {_at(opened)} is not closed"
    elif problem == "mapping values are not allowed here":
        hint = "a ':' where a value goes: quote a value that holds ': ', or look for a key without its ':' on the line above"
    elif problem.startswith("expected <block end>") and opened is not None:
        hint = f"this line is indented differently from the block it belongs to (from {_at(opened)}): align it with its siblings"
    elif problem.startswith("found character '\\t'"):  # PyYAML writes the tab as \t
        hint = "YAML indents with spaces, not tabs"
    elif problem.startswith("found undefined alias"):
        hint = "an alias (*name) needs an anchor (&name) earlier in the file"
    elif problem.startswith("could not find expected ':'"):
        hint = "a key without its ':', or a value spread over lines that needs quotes"
    return f"{problem}; {hint}" if hint else problem


def _too_many(file: str, node_or_mark, path: Path = ()) -> SpecError:
    mark = getattr(node_or_mark, "start_mark", node_or_mark)
    return SpecError(
        f"the document expands to more than {MAX_NODES:,} values (an alias/anchor bomb?)",
        file=file, line=mark.line + 1 if mark else None, path=format_path(path) or None,
    )


def _too_deep(file: str, mark) -> SpecError:
    return SpecError(f"nested more than {MAX_DEPTH} levels deep", file=file, line=mark.line + 1 if mark else None)


# YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution): the only booleans are
# true/false, integers are decimal (leading zeros allowed), 0o octal or 0x hex, floats need no dot.
_BOOL, _INT, _FLOAT = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_CORE = (
    (_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), "tTfF"),
    (_INT, re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), "-+0123456789"),
    (_FLOAT, re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
     "-+.0123456789"),
)
_KEPT_1_1 = ("tag:yaml.org,2002:null", _MERGE_TAG)  # null (~, null, empty) is the same in 1.2; merge keys are kept


class _Loader(yaml.SafeLoader):
    """The safe loader, with YAML 1.2 core scalars and composition that counts nodes and depth as it goes
    (PyYAML's composer recurses once per level, so 5,000 nested brackets would exhaust Python's stack)."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag in _KEPT_1_1]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def __init__(self, text: str, file: str):
        super().__init__(text)
        self.file = file
        self.composed = 0
        self.depth = 0

    def compose_node(self, parent, index):
        self.composed += 1
        if self.composed > MAX_NODES:
            raise _too_many(self.file, self.peek_event().start_mark)
        self.depth += 1
        if self.depth > MAX_DEPTH + 1:
            raise _too_deep(self.file, self.peek_event().start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        text = node.value.replace("+", "")
        sign, digits = (-1, text[1:]) if text.startswith("-") else (1, text)
        if len(digits) > MAX_DIGITS:
            raise SpecError(f"an integer of {len(digits)} digits; numbers in a spec have at most {MAX_DIGITS}", file=self.file,
                            line=node.start_mark.line + 1)
        if digits.startswith(("0o", "0x")):
            return sign * int(digits[2:], 8 if digits[1] == "o" else 16)
        return sign * int(digits, 10)  # 040 is forty, not YAML 1.1's octal 32


for _tag, _regexp, _first in _CORE:
    _Loader.add_implicit_resolver(_tag, _regexp, list(_first))
_Loader.add_constructor(_INT, _Loader.construct_yaml_int)


class _Builder:
    """Turns composed YAML nodes into dicts, lists and scalars, recording each value's line."""

    def __init__(self, loader: yaml.SafeLoader, file: str):
        self.loader = loader
        self.file = file
        self.lines: dict[Path, int] = {}
        self.nodes = 0

    def error(self, message: str, node: yaml.Node, path: Path) -> SpecError:
        return SpecError(message, file=self.file, line=node.start_mark.line + 1, path=format_path(path) or None)

    def build(self, node: yaml.Node, path: Path, depth: int) -> object:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _too_many(self.file, node, path)
        if depth > MAX_DEPTH:
            raise self.error(f"nested more than {MAX_DEPTH} levels deep", node, path)
        self.lines.setdefault(path, node.start_mark.line + 1)

        if isinstance(node, yaml.MappingNode):
            if node.tag != _MAP_TAG:
                raise self.error(_tag_message(node), node, path)
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ_TAG:
                raise self.error(_tag_message(node), node, path)
            return [self.build(item, path + (i,), depth + 1) for i, item in enumerate(node.value)]
        try:
            # The safe constructor knows only the standard scalar tags; anything else
            # (``!!python/object``, a custom ``!tag``) raises instead of building an object.
            return self.loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError:
            raise self.error(_tag_message(node), node, path) from None
        except SpecError as exc:  # a number the constructor refused: give it this value's path
            raise self.error(exc.message, node, path) from None

    def _mapping(self, node: yaml.MappingNode, path: Path, depth: int) -> dict:
        seen: dict[object, int] = {}
        merges: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merges.append(value_node)
                continue
            key = self.build_key(key_node, path)
            if key in seen:  # PyYAML would silently keep the last one
                raise self.error(
                    f"duplicate key {key!r} (first at line {seen[key]})", key_node, path + (key,)
                )
            seen[key] = key_node.start_mark.line + 1
        result: dict = {}
        # YAML merge keys (``<<: *defaults``, ``<<: [*a, *b]``): explicit keys win, then the first mapping
        # listed. We merge built values rather than let PyYAML's flatten_mapping copy node lists (which it
        # does before anything is counted), so every merged value counts against MAX_NODES.
        for merge in merges:
            sources = merge.value if isinstance(merge, yaml.SequenceNode) else [merge]
            if not all(isinstance(source, yaml.MappingNode) for source in sources):
                raise self.error("a merge key (<<) takes a mapping or a list of mappings", merge, path)
            for source in reversed(sources):
                result.update(self.build(source, path, depth + 1))  # deeper: `&a {<<: *a}` must end
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self.build_key(key_node, path)
            child = path + (key,)
            self.lines[child] = key_node.start_mark.line + 1  # point at the key, not at a nested value
            result[key] = self.build(value_node, child, depth + 1)
        return result

    def build_key(self, key_node: yaml.Node, path: Path) -> str:
        if not isinstance(key_node, yaml.ScalarNode):
            raise self.error("a key must be a plain word", key_node, path)
        key = self.loader.construct_object(key_node)
        if not isinstance(key, str):
            # YAML 1.1 reads `on`, `no`, `1` as bool/int keys; a spec's keys are names.
            raise self.error(f"key {key!r} is not a name (quote it if you meant the text)", key_node, path)
        return key


def _tag_message(node: yaml.Node) -> str:
    tag = node.tag.replace("tag:yaml.org,2002:", "!!")
    return f"tag {tag} is not allowed; a spec holds plain values only"
