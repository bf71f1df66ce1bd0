"""Reading YAML safely, keeping the line of every value so errors can point at it.

PyYAML's ``safe_load`` forgets where values came from, silently keeps the last of two duplicate keys
and expands aliases without bound. We compose the node graph with the safe loader and build the
Python values ourselves, which gives us all three for a few lines of code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from .errors import SpecError

MAX_BYTES = 4 * 1024 * 1024  # a spec is a page of text; anything bigger is not a spec
MAX_NODES = 100_000  # bounds alias ("billion laughs") expansion
MAX_DEPTH = 64

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"

Path = tuple  # a path into the document: ("stages", 3, "stride")


@dataclass(frozen=True)
class Source:
    """Where a spec came from: its file name (as given, for messages) and the line of each path."""

    file: str
    text: str = ""
    lines: dict = field(default_factory=dict, compare=False)
    origins: dict = field(default_factory=dict, compare=False)  # path -> the override that set it

    def locate(self, path: Path) -> tuple[str, int | None]:
        """(file, line) of ``path``; for a value set by an override, (the override, None)."""
        for end in range(len(path), 0, -1):
            if path[:end] in self.origins:
                return self.origins[path[:end]], None
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


def format_path(path: Path) -> str:
    """``("stages", 3, "stride")`` -> ``stages[3].stride``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


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
        loader = yaml.SafeLoader(text)  # checks the characters already: inside the try
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
        problem = exc.problem or exc.context or "invalid YAML"
        raise SpecError(f"invalid YAML: {problem}", file=file, line=mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"invalid YAML: {exc}", file=file) from None
    finally:
        if loader is not None:
            loader.dispose()
    return value, Source(file=file, text=text, lines=builder.lines)


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
            raise self.error(
                f"the document expands to more than {MAX_NODES:,} values (an alias/anchor bomb?)", node, path
            )
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

    def _mapping(self, node: yaml.MappingNode, path: Path, depth: int) -> dict:
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.build_key(key_node, path)
            if key in seen:  # PyYAML would silently keep the last one
                raise self.error(
                    f"duplicate key {key!r} (first at line {seen[key]})", key_node, path + (key,)
                )
            seen[key] = key_node.start_mark.line + 1
        # YAML merge keys (``<<: *defaults``) are resolved by the safe loader; explicit keys win.
        self.loader.flatten_mapping(node)
        result: dict = {}
        for key_node, value_node in node.value:
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
