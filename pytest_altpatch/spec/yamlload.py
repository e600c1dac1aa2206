"""Safe YAML loading that remembers where every node came from.

PyYAML's loaders build plain values and forget positions; they also accept a
repeated mapping key silently, keeping the last value.  Case files are a user
interface, so every error must point at ``file:line:column``.  We therefore compose
the node graph with a *private* subclass of :class:`yaml.SafeLoader` (PyYAML's
global loaders and constructors are never touched: installing a constructor on
``yaml.SafeLoader`` itself would change every other package's YAML in the process)
and build the values ourselves, recording a :class:`~pytest_altpatch.errors.Location`
for each node under its dotted JSON path (``expect.boot.text.fn``, ``platform.1``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import yaml

from pytest_altpatch.errors import Location, SpecError

#: Bound on the number of values one document may expand to (anchors and aliases
#: can make a small file expand exponentially: the "billion laughs" document).
MAX_NODES = 200_000

#: Bound on the size of a file we are willing to read.
MAX_BYTES = 4 * 1024 * 1024


class _PrivateSafeLoader(yaml.SafeLoader):
    """A SafeLoader subclass of our own, so nothing we do leaks into PyYAML globals."""


@dataclass(frozen=True)
class LocatedDocument:
    """A YAML document as plain values plus where each value and key sits."""

    file: str
    value: object
    #: JSON path -> location of the value node ("" is the document root).
    locations: Mapping[str, Location] = field(default_factory=dict)
    #: JSON path -> location of the mapping *key* that introduces the value.
    key_locations: Mapping[str, Location] = field(default_factory=dict)
    #: JSON path -> 1-based file line of the first text line of a string value.
    text_starts: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    def location(self, json_path: str, *, key: bool = False) -> Location:
        """The location of ``json_path`` (its key if ``key``), else its nearest parent."""
        path = json_path
        while True:
            table = self.key_locations if key else self.locations
            found = table.get(path)
            if found is not None:
                return found
            key = False
            if not path:
                return Location(file=self.file, json_path=json_path or None)
            path = path.rpartition(".")[0]


def join_path(parent: str, child: str | int) -> str:
    """Dotted JSON path of ``child`` under ``parent``."""
    return f"{parent}.{child}" if parent else str(child)


def _mark_location(file: str, mark: yaml.Mark | None, json_path: str) -> Location:
    if mark is None:
        return Location(file=file, json_path=json_path or None)
    return Location(file=file, line=mark.line + 1, column=mark.column + 1,
                    json_path=json_path or None)


class _Builder:
    """Turns a composed node graph into plain values, recording locations."""

    def __init__(self, file: str, loader: _PrivateSafeLoader, source_lines: list[str]) -> None:
        self.file = file
        self.loader = loader
        self.source_lines = source_lines
        self.locations: dict[str, Location] = {}
        self.key_locations: dict[str, Location] = {}
        self.text_starts: dict[str, tuple[int, int]] = {}
        self.count = 0
        self.active: set[int] = set()

    def build(self, node: yaml.Node, path: str) -> object:
        self.count += 1
        if self.count > MAX_NODES:
            raise SpecError(
                "SPEC_SYNTAX",
                f"document expands to more than {MAX_NODES} values (alias bomb?)",
                location=_mark_location(self.file, node.start_mark, path),
            )
        if id(node) in self.active:
            raise SpecError(
                "SPEC_SYNTAX",
                "recursive alias: a node contains itself",
                location=_mark_location(self.file, node.start_mark, path),
            )
        self.locations[path] = _mark_location(self.file, node.start_mark, path)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            self.active.add(id(node))
            try:
                return [self.build(item, join_path(path, index))
                        for index, item in enumerate(node.value)]
            finally:
                self.active.discard(id(node))
        assert isinstance(node, yaml.ScalarNode)  # composer only makes these three kinds
        return self._scalar(node, path)

    def _scalar(self, node: yaml.ScalarNode, path: str) -> object:
        try:
            value = self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            raise SpecError(
                "SPEC_SYNTAX", f"bad scalar: {getattr(exc, 'problem', exc)}",
                location=_mark_location(self.file, node.start_mark, path),
            ) from None
        except (ValueError, TypeError, OverflowError) as exc:
            # e.g. an out-of-range timestamp; PyYAML lets these through unwrapped.
            raise SpecError(
                "SPEC_SYNTAX", f"bad scalar: {exc}",
                location=_mark_location(self.file, node.start_mark, path),
            ) from None
        if isinstance(value, str):
            self.text_starts[path] = self._text_start(node)
        return value

    def _text_start(self, node: yaml.ScalarNode) -> tuple[int, int]:
        """File line and column of the first character of the string's first line."""
        mark = node.start_mark
        if node.style in ("|", ">"):
            # Block scalars: the indicator sits on the key's line, content starts below.
            line = mark.line + 1
            column = 1
            for text in self.source_lines[line:]:
                if text.strip():
                    column = len(text) - len(text.lstrip(" ")) + 1
                    break
            return line + 1, column
        quote = 1 if node.style in ("'", '"') else 0
        return mark.line + 1, mark.column + 1 + quote

    def _mapping(self, node: yaml.MappingNode, path: str) -> dict[str, object]:
        result: dict[str, object] = {}
        seen: dict[str, yaml.Node] = {}
        self.active.add(id(node))
        try:
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise SpecError(
                        "SPEC_SCHEMA", "mapping keys must be plain strings",
                        location=_mark_location(self.file, key_node.start_mark, path),
                    )
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise SpecError(
                        "SPEC_SCHEMA", "merge keys ('<<') are not supported in case files",
                        location=_mark_location(self.file, key_node.start_mark, path),
                    )
                key = self._scalar(key_node, path)
                if not isinstance(key, str):
                    # YAML 1.1 turns `on:`/`no:`/`1:` into bools and ints.
                    raise SpecError(
                        "SPEC_SCHEMA",
                        f"mapping key {key_node.value!r} is read as {type(key).__name__}; "
                        "quote it to make it a string",
                        location=_mark_location(self.file, key_node.start_mark, path),
                    )
                child = join_path(path, key)
                if key in seen:
                    first = seen[key].start_mark
                    raise SpecError(
                        "SPEC_DUPLICATE_KEY",
                        f"key {key!r} repeats (first at line {first.line + 1})",
                        location=_mark_location(self.file, key_node.start_mark, child),
                    )
                seen[key] = key_node
                self.key_locations[child] = _mark_location(self.file, key_node.start_mark, child)
                result[key] = self.build(value_node, child)
        finally:
            self.active.discard(id(node))
        return result


def load_yaml_text(text: str, file: str) -> LocatedDocument:
    """Parse one YAML document from ``text``; errors are :class:`SpecError` s."""
    try:
        # The reader rejects non-printable characters already in the constructor.
        loader = _PrivateSafeLoader(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "position", None)
        line = text[:mark].count("\n") + 1 if isinstance(mark, int) else None
        raise SpecError("SPEC_SYNTAX", f"invalid YAML: {getattr(exc, 'reason', exc)}",
                        location=Location(file=file, line=line)) from None
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            problem = exc.problem or exc.context or "cannot parse"
            raise SpecError(
                "SPEC_SYNTAX", f"invalid YAML: {problem}",
                location=_mark_location(file, mark, ""),
            ) from None
        except yaml.YAMLError as exc:
            raise SpecError("SPEC_SYNTAX", f"invalid YAML: {exc}",
                            location=Location(file=file)) from None
        except RecursionError:
            raise SpecError("SPEC_SYNTAX", "YAML nesting is too deep",
                            location=Location(file=file)) from None
        if node is None:
            return LocatedDocument(file, None, {"": Location(file=file, line=1, column=1)})
        builder = _Builder(file, loader, text.splitlines())
        try:
            value = builder.build(node, "")
        except RecursionError:
            raise SpecError("SPEC_SYNTAX", "YAML nesting is too deep",
                            location=Location(file=file)) from None
    finally:
        loader.dispose()
    return LocatedDocument(
        file,
        value,
        MappingProxyType(builder.locations),
        MappingProxyType(builder.key_locations),
        MappingProxyType(builder.text_starts),
    )


def load_yaml_file(path: Path, display: str | None = None) -> LocatedDocument:
    """Read and parse ``path``; unreadable or non-UTF-8 files raise ``SPEC_IO``."""
    file = display if display is not None else str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SpecError("SPEC_IO", f"cannot read file: {exc.strerror or exc}",
                        location=Location(file=file)) from None
    if len(raw) > MAX_BYTES:
        raise SpecError("SPEC_IO", f"file is larger than {MAX_BYTES} bytes",
                        location=Location(file=file))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SpecError("SPEC_IO", "file is not valid UTF-8",
                        location=Location(file=file, line=line)) from None
    return load_yaml_text(text, file)


__all__ = ["MAX_NODES", "LocatedDocument", "join_path", "load_yaml_file", "load_yaml_text"]
