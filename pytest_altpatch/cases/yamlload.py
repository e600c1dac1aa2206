"""Safe YAML loading that remembers where every node came from.

PyYAML's loaders build plain values and forget positions; they also accept a
repeated mapping key silently, keeping the last value.  Case files are a user
interface, so every error must point at ``file:line:column``.  We therefore compose
the node graph with a *private* subclass of :class:`yaml.SafeLoader` (PyYAML's
global loaders and constructors are never touched: installing a constructor on
``yaml.SafeLoader`` itself would change every other package's YAML in the process)
and build the values ourselves, recording a :class:`~pytest_altpatch.errors.Location`
for each node under its dotted JSON path (``expect.boot.text.fn``, ``platform.1``).

Inputs are bounded before they cost: a file is ``stat``-ed (FIFOs and devices refused)
and read with a bound; the node graph is composed by us from the parser's *event
stream* (libyaml's ``CParser`` when PyYAML has it, about 15 times faster), so the node,
alias-expansion and depth limits stop a hostile document after at most ``MAX_NODES``
events (``MAX_ALIAS_VALUES`` of them through aliases) rather than after PyYAML has
built the whole graph.  libyaml does not check for
non-printable characters, so we do, with a location.  Only the safe core tags (null,
bool, int, float, str, seq, map) are accepted, explicitly or implicitly, and a tagged
value must be one its tag can hold (``!!bool maybe`` is refused); strings holding lone
surrogates or control characters (other than tab and newline) are refused.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import yaml

from pytest_altpatch import collector
from pytest_altpatch.cases.located import (
    MAX_BYTES,
    LocatedDocument,
    decode_utf8,
    join_path,
    read_bounded,
)
from pytest_altpatch.errors import Location, SpecError

#: Bound on the number of values one document may expand to, aliases counted in full.
#: Written values cost input bytes (a generated 10,000-site case is 3 MB with about
#: 110,000 values; the largest bundled file has about 540), so this bounds the work a
#: file of MAX_BYTES can ask for.
MAX_NODES = 250_000

#: Bound on the values reached through aliases (anchors and aliases can make a small
#: file expand exponentially: the "billion laughs" document).  No bundled file uses
#: more than a few hundred.
MAX_ALIAS_VALUES = 50_000


#: Bound on how deeply collections may nest.
MAX_DEPTH = 64

#: Characters YAML does not allow in a stream (the pure-Python reader checks these;
#: libyaml does not).
_NON_PRINTABLE: Final = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
#: Characters a string value may not hold: lone surrogates, C0 controls other than tab,
#: newline and carriage return, DEL and C1 controls.
_UNSAFE_IN_STRING: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")

_CORE: Final = "tag:yaml.org,2002:"
#: The safe core schema: what a case, catalog or payload file may contain.
SAFE_SCALAR_TAGS: Final = frozenset(_CORE + name for name in ("null", "bool", "int", "float",
                                                               "str"))
_SEQ_TAG: Final = _CORE + "seq"
_MAP_TAG: Final = _CORE + "map"
_MERGE_TAG: Final = _CORE + "merge"  # a '<<' key: refused by the builder with its own message


class _PrivateSafeLoader(yaml.SafeLoader):
    """A SafeLoader subclass of our own, so nothing we do leaks into PyYAML globals."""


if getattr(yaml, "__with_libyaml__", False):
    class _PrivateCSafeLoader(yaml.CSafeLoader):
        """libyaml's parser with PyYAML's safe constructor and resolver, privately."""

    _FAST_LOADER: type | None = _PrivateCSafeLoader
else:  # pragma: no cover - PyYAML built without libyaml
    _FAST_LOADER = None


def _mark_location(file: str, mark: yaml.Mark | None, json_path: str) -> Location:
    if mark is None:
        return Location(file=file, json_path=json_path or None)
    return Location(file=file, line=mark.line + 1, column=mark.column + 1,
                    json_path=json_path or None)


def _check_printable(text: str, file: str) -> None:
    found = _NON_PRINTABLE.search(text)
    if found is None:
        return
    line = text.count("\n", 0, found.start()) + 1
    column = found.start() - (text.rfind("\n", 0, found.start()) + 1) + 1
    raise SpecError("SPEC_SYNTAX",
                    f"invalid YAML: special character #x{ord(found.group()):04x} is not allowed",
                    location=Location(file=file, line=line, column=column))


class _EventComposer:
    """Composes nodes from a parser's events, with limits checked at every event."""

    def __init__(self, file: str, parser: Any) -> None:
        self.file = file
        self.parser = parser  # a SafeLoader or CSafeLoader: events, resolve()
        self.anchors: dict[str, tuple[yaml.Node, int]] = {}
        self.open_anchors: set[str] = set()
        self.expanded = 0  # nodes the document expands to, aliases counted in full
        self.aliased = 0  # of which reached through aliases

    def _fail(self, message: str, mark: Any, code: str = "SPEC_SYNTAX") -> SpecError:
        return SpecError(code, message, location=_mark_location(self.file, mark, ""))

    def _too_many(self, mark: Any) -> SpecError:
        return self._fail(f"document expands to more than {MAX_NODES} values", mark)

    def document(self) -> yaml.Node | None:
        """The stream's single document, or None if it is empty."""
        parser = self.parser
        parser.get_event()  # StreamStartEvent
        if parser.check_event(yaml.StreamEndEvent):
            return None
        parser.get_event()  # DocumentStartEvent
        node, _ = self._node(parser.get_event(), 0)
        parser.get_event()  # DocumentEndEvent
        if not parser.check_event(yaml.StreamEndEvent):
            event = parser.get_event()
            raise self._fail("invalid YAML: expected a single document in the stream",
                             event.start_mark)
        return node

    def scalar_tag(self, node: yaml.ScalarNode, json_path: str) -> str:
        """The core tag of a composed scalar (resolved when it is built, not composed,
        so the event loop stays cheap); ``SPEC_TAG`` outside the safe core."""
        if getattr(node, "core_tag", False):
            return str(node.tag)
        node.core_tag = True  # type: ignore[attr-defined]
        explicit = node.tag
        implicit = getattr(node, "implicit", (True, False))
        where = _mark_location(self.file, node.start_mark, json_path)
        if explicit in (None, "!"):
            tag = str(self.parser.resolve(yaml.ScalarNode, node.value, implicit))
            if tag not in SAFE_SCALAR_TAGS and tag != _MERGE_TAG:
                raise SpecError("SPEC_TAG", f"{node.value!r} is read as a "
                                f"{tag.rpartition(':')[2]}, which case files do not use; quote "
                                "it to make it a string", location=where)
            return tag
        tag = str(explicit)
        if tag not in SAFE_SCALAR_TAGS:
            raise SpecError("SPEC_TAG", f"tag {_shown(tag)} is not in the safe core schema "
                            "(null, bool, int, float, str, seq, map)", location=where)
        resolved = self.parser.resolve(yaml.ScalarNode, node.value, (True, False))
        if tag != _CORE + "str" and resolved != tag:
            raise SpecError("SPEC_TAG", f"{node.value!r} is not a valid {tag[len(_CORE):]}",
                            location=where)
        return tag

    def _collection_tag(self, event: Any, kind: type[yaml.Node], allowed: str) -> str:
        explicit = event.tag
        if explicit in (None, "!"):
            return allowed
        if explicit != allowed:
            raise self._fail(f"tag {_shown(str(explicit))} is not in the safe core schema "
                             "(null, bool, int, float, str, seq, map)", event.start_mark,
                             "SPEC_TAG")
        return allowed

    def _node(self, event: Any, depth: int) -> tuple[yaml.Node, int]:
        """The node ``event`` starts and the number of values it expands to."""
        if isinstance(event, yaml.ScalarEvent):
            return self._scalar_node(event)
        if isinstance(event, yaml.AliasEvent):
            return self._alias_node(event)
        return self._collection_node(event, depth)

    def _scalar_node(self, event: Any) -> tuple[yaml.Node, int]:
        self.expanded += 1
        if self.expanded > MAX_NODES:
            raise self._too_many(event.start_mark)
        tag: Any = event.tag  # None or "!" until built: see scalar_tag
        marks: tuple[Any, Any] = (event.start_mark, event.end_mark)
        scalar = yaml.ScalarNode(tag, event.value, *marks, style=event.style)
        scalar.implicit = event.implicit  # type: ignore[attr-defined]
        if event.anchor is not None:
            self.anchors[event.anchor] = (scalar, 1)
        return scalar, 1

    def _alias_node(self, event: Any) -> tuple[yaml.Node, int]:
        if event.anchor in self.open_anchors:
            raise self._fail("recursive alias: a node contains itself", event.start_mark)
        if event.anchor not in self.anchors:
            raise self._fail(f"invalid YAML: found undefined alias {event.anchor!r}",
                             event.start_mark)
        shared, size = self.anchors[event.anchor]
        self.expanded += size
        self.aliased += size
        if self.aliased > MAX_ALIAS_VALUES:
            raise self._fail(f"aliases expand to more than {MAX_ALIAS_VALUES} values "
                             "(alias bomb?)", event.start_mark)
        if self.expanded > MAX_NODES:
            raise self._too_many(event.start_mark)
        return shared, size

    def _collection_node(self, event: Any, depth: int) -> tuple[yaml.Node, int]:
        start: Any = event.start_mark
        self.expanded += 1
        if self.expanded > MAX_NODES:
            raise self._too_many(start)
        if depth >= MAX_DEPTH:
            raise self._fail(f"YAML nesting is deeper than {MAX_DEPTH} levels", start)
        anchor = event.anchor
        if anchor is not None:
            self.open_anchors.add(anchor)
        node: yaml.Node
        if isinstance(event, yaml.SequenceStartEvent):
            node, size = self._sequence(event, depth)
        else:
            assert isinstance(event, yaml.MappingStartEvent)  # the parser's grammar
            node, size = self._mapping(event, depth)
        if anchor is not None:
            self.open_anchors.discard(anchor)
            self.anchors[anchor] = (node, size)
        return node, size

    def _sequence(self, event: Any, depth: int) -> tuple[yaml.Node, int]:
        get_event = self.parser.get_event
        size = 1
        items: list[yaml.Node] = []
        node = yaml.SequenceNode(self._collection_tag(event, yaml.SequenceNode, _SEQ_TAG),
                                 items, event.start_mark, None, flow_style=event.flow_style)
        while not isinstance(child_event := get_event(), yaml.SequenceEndEvent):
            child, child_size = self._node(child_event, depth + 1)
            items.append(child)
            size += child_size
        node.end_mark = child_event.end_mark
        return node, size

    def _mapping(self, event: Any, depth: int) -> tuple[yaml.Node, int]:
        get_event = self.parser.get_event
        size = 1
        pairs: list[tuple[yaml.Node, yaml.Node]] = []
        node = yaml.MappingNode(self._collection_tag(event, yaml.MappingNode, _MAP_TAG),
                                pairs, event.start_mark, None, flow_style=event.flow_style)
        while not isinstance(key_event := get_event(), yaml.MappingEndEvent):
            key, key_size = self._node(key_event, depth + 1)
            value, value_size = self._node(get_event(), depth + 1)
            pairs.append((key, value))
            size += key_size + value_size
        node.end_mark = key_event.end_mark
        return node, size


def _shown(tag: str) -> str:
    return "!!" + tag[len(_CORE):] if tag.startswith(_CORE) else tag


class _Builder:
    """Turns a composed node graph into plain values, recording locations."""

    def __init__(self, file: str, loader: yaml.SafeLoader, source_lines: list[str],
                 composer: _EventComposer) -> None:
        self.file = file
        self.loader = loader
        self.composer = composer
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
                f"document expands to more than {MAX_NODES} values",
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
        node.tag = self.composer.scalar_tag(node, path)
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
            unsafe = _UNSAFE_IN_STRING.search(value)
            if unsafe is not None:
                raise SpecError(
                    "SPEC_CHARACTER",
                    f"string holds U+{ord(unsafe.group()):04X} at offset {unsafe.start()} "
                    "(surrogates and control characters other than tab and newline are "
                    "not allowed)",
                    location=_mark_location(self.file, node.start_mark, path))
            self.text_starts[path] = self._text_start(node)
        return value

    def _text_start(self, node: yaml.ScalarNode) -> tuple[int, int]:
        """File line and column of the first character of the string's first line."""
        mark = node.start_mark
        if node.style in ("|", ">"):
            # Block scalars: the indicator sits on the key's line, content starts below.
            line = mark.line + 1
            column = 1
            lines = self.source_lines
            for index in range(line, len(lines)):  # (no slice: a copy per scalar)
                text = lines[index]
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
                key_node.tag = self.composer.scalar_tag(key_node, path)
                if key_node.tag == _MERGE_TAG:
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
    _check_printable(text, file)
    loader_class = _FAST_LOADER or _PrivateSafeLoader
    try:
        loader = loader_class(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "position", None)
        line = text[:mark].count("\n") + 1 if isinstance(mark, int) else None
        raise SpecError("SPEC_SYNTAX", f"invalid YAML: {getattr(exc, 'reason', exc)}",
                        location=Location(file=file, line=line)) from None
    try:
        # The composed graph and the values built from it are acyclic and short-lived:
        # without the pause, the cyclic collector walks the growing heap again and
        # again (superlinear in the document's size).
        with collector.paused():
            return _compose_and_build(file, text, loader)
    finally:
        loader.dispose()


def _compose_and_build(file: str, text: str, loader: Any) -> LocatedDocument:
    composer = _EventComposer(file, loader)
    try:
        node = composer.document()
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
    if node is None:
        return LocatedDocument(file, None, {"": Location(file=file, line=1, column=1)})
    builder = _Builder(file, loader, text.splitlines(), composer)
    try:
        value = builder.build(node, "")
    except RecursionError:
        raise SpecError("SPEC_SYNTAX", "YAML nesting is too deep",
                        location=Location(file=file)) from None
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
    return load_yaml_text(decode_utf8(read_bounded(path, file), file), file)


__all__ = [
    "MAX_ALIAS_VALUES",
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_NODES",
    "SAFE_SCALAR_TAGS",
    "LocatedDocument",
    "decode_utf8",
    "join_path",
    "load_yaml_file",
    "load_yaml_text",
    "read_bounded",
]
