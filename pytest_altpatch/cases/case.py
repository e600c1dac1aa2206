"""Loading one case file into a resolved, frozen :class:`~pytest_altpatch.cases.model.Case`.

Three stages, each stopping the file (never the run) when it finds a problem:
YAML (syntax, duplicate keys), JSON Schema (shape, unknown keys), and resolution
(catalog names, labels, registered codes, cross-references).  Resolution keeps
going after a problem so ``altpatch lint`` can list every one; :func:`load_case`
raises the first in file order.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Final, Literal, cast

from pytest_altpatch import collector
from pytest_altpatch.cases import kept_resolved
from pytest_altpatch.cases.catalog import display_path, known_capabilities
from pytest_altpatch.cases.cpu_numbers import CpuNumbering
from pytest_altpatch.cases.document_cache import document_key, load_valid_document
from pytest_altpatch.cases.located import LocatedDocument, join_path
from pytest_altpatch.cases.model import (
    DEFAULT_PAYLOAD_OFFSET,
    BootOptions,
    Case,
    Catalog,
    CpuInstance,
    ErrorExpectation,
    Expectations,
    ExpectPhase,
    ExtraCap,
    FunctionReplacement,
    HotplugExpectation,
    ImageSpec,
    LateExpectation,
    PayloadSpec,
    PhaseExpectation,
    ProbeSpec,
    RawAltEntry,
    SourceBlock,
    StreamExpectation,
)
from pytest_altpatch.cases.platform import parse_platform_items
from pytest_altpatch.cases.schema import schema_path, validate
from pytest_altpatch.cases.source_names import defined_labels, macro_uses
from pytest_altpatch.cases.suggestions import did_you_mean
from pytest_altpatch.dialects import DIALECTS, Dialect
from pytest_altpatch.errors import ERROR_CODES, Location, SpecError
from pytest_altpatch.findings import FINDING_CODES
from pytest_altpatch.resources import bundled_corpus

#: The case format this loader reads (``format:`` in every case file).
CASE_FORMAT: Final = 1

#: Most CPUs a case may boot plus hot-plug.
MAX_CPUS: Final = 256  # the machine's limit (machine.config.MAX_CPUS)

#: Symbols the harness defines in every image, usable as labels by cases.
HARNESS_SYMBOLS: Final = frozenset({"_text", "_etext", "__alt_instructions",
                                    "__alt_instructions_end"})

_PHASE_OF_SECTION: Final[Mapping[str, tuple[ExpectPhase, ...]]] = {
    "expect.error": ("load", "build"),
    "expect.boot.error": ("boot",),
    "expect.boot_cpu.error": ("boot",),
    "expect.late.load.error": ("late",),
    "expect.late.apply.error": ("late",),
    "expect.late.revert.error": ("late",),
}

_HOTPLUG_CODES: Final = tuple(code for code in ERROR_CODES if code.startswith("LATE_CPU_"))


def _first_line_location(document: LocatedDocument, path: str) -> Location:
    """Where the first text line of the string at ``path`` sits in the file."""
    node = document.location(path)
    start = document.text_starts.get(path)
    if start is None:
        return node
    return Location(file=node.file, line=start[0], column=start[1], json_path=path)


@dataclass
class _Resolver:
    """Turns a schema-valid document into model objects, collecting problems."""

    document: LocatedDocument
    catalog: Catalog
    problems: list[SpecError] = field(default_factory=list)
    cap_names: set[str] = field(default_factory=set)
    case_caps: set[str] = field(default_factory=set)
    dialect_list: tuple[Dialect, ...] = ()

    # -- helpers ----------------------------------------------------------------
    def at(self, path: str) -> Location:
        return self.document.location(path)

    def problem(self, code: str, message: str, path: str, hint: str | None = None) -> None:
        self.problems.append(SpecError(code, message, location=self.at(path), hint=hint))

    def block(self, value: object, path: str) -> SourceBlock | None:
        if value is None:
            return None
        return SourceBlock(str(value), _first_line_location(self.document, path))

    def check_cap(self, name: str, location: Location | str, *, encoded: bool = True) -> None:
        """``name`` must be known; if ``encoded`` (it goes into a table entry), every
        dialect the case runs in must number it, or the image would not build there."""
        where = self.at(location) if isinstance(location, str) else location
        if name not in self.cap_names:
            self.problems.append(SpecError(
                "SPEC_UNKNOWN_CAP", f"unknown capability {name!r}", location=where,
                hint=did_you_mean(name, self.cap_names),
            ))
            return
        if not encoded or name in self.case_caps:
            return
        missing = [dialect for dialect in self.dialect_list
                   if dialect in self.catalog.numberings
                   and self.catalog.numberings[dialect].number(name) is None]
        if missing:
            self.problems.append(SpecError(
                "SPEC_UNKNOWN_CAP",
                f"capability {name!r} has no number in {', '.join(missing)}; "
                "restrict the case's dialects",
                location=where,
            ))

    def check_label(self, name: str, known: set[str], path: str, what: str) -> None:
        if name not in known:
            self.problem("SPEC_BAD_REFERENCE", f"{what} {name!r} is not defined", path,
                         did_you_mean(name, known))

    # -- sections ---------------------------------------------------------------
    def dialects(self, raw: object) -> tuple[Dialect, ...]:
        if raw is None:
            return DIALECTS
        chosen: list[Dialect] = []
        for index, name in enumerate(cast(list[str], raw)):
            if name in DIALECTS:
                chosen.append(name)
            else:
                self.problem("SPEC_UNKNOWN_DIALECT", f"unknown dialect {name!r}",
                             join_path("dialects", index), did_you_mean(name, DIALECTS))
        return tuple(dialect for dialect in DIALECTS if dialect in chosen)

    def requires(self, raw: object) -> tuple[str, ...]:
        names = cast(list[str], raw or [])
        for index, name in enumerate(names):
            if name not in self.catalog.patcher_features:
                self.problem("SPEC_UNKNOWN_FEATURE", f"unknown patcher feature {name!r}",
                             join_path("requires", index),
                             did_you_mean(name, self.catalog.patcher_features))
        return tuple(names)

    def cpus(self, raw: object, path: str) -> tuple[CpuInstance, ...]:
        if raw is None:
            return ()
        return parse_platform_items(
            cast("str | Sequence[object]", raw), self.catalog,
            document=self.document, path=path, problems=self.problems,
        )

    def caps(self, raw: object) -> tuple[ExtraCap, ...]:
        result: list[ExtraCap] = []
        seen: set[str] = set()
        for index, entry in enumerate(cast(list[Mapping[str, str]], raw or [])):
            path = join_path("caps", index)
            name = entry.get("name")
            erratum, feature = entry.get("erratum"), entry.get("feature")
            if erratum is not None:
                found = self.catalog.errata.get(erratum)
                if found is None:
                    self.problem("SPEC_UNKNOWN_ERRATUM", f"unknown erratum {erratum!r}",
                                 join_path(path, "erratum"),
                                 did_you_mean(erratum, self.catalog.errata))
                    continue
                name = name or found.capability
            if feature is not None:
                found_feature = self.catalog.features.get(feature)
                if found_feature is None:
                    self.problem("SPEC_UNKNOWN_FEATURE", f"unknown catalog feature {feature!r}",
                                 join_path(path, "feature"),
                                 did_you_mean(feature, self.catalog.features))
                    continue
                name = name or found_feature.capability
            assert name is not None  # the schema requires name, erratum or feature
            if name in seen:
                self.problem("SPEC_DUPLICATE_ID", f"capability {name!r} is listed twice", path)
                continue
            seen.add(name)
            when = cast("Literal['always', 'never'] | None", entry.get("when"))
            result.append(ExtraCap(name, when, erratum, feature, self.at(path)))
        return tuple(result)

    def macro_uses(self, block: SourceBlock | None) -> None:
        for use in macro_uses(block):
            if use.kind == "cap":
                self.check_cap(use.name, use.location)
            elif use.name not in self.catalog.callbacks:
                self.problems.append(SpecError(
                    "SPEC_BAD_REFERENCE", f"unknown callback {use.name!r}",
                    location=use.location,
                    hint=did_you_mean(use.name, self.catalog.callbacks),
                ))

    def alt_table(self, raw: object, labels: set[str], where: str = "image.alt_table"
                  ) -> tuple[RawAltEntry, ...] | None:
        if raw is None:
            return None
        entries: list[RawAltEntry] = []
        for index, entry in enumerate(cast(list[Mapping[str, object]], raw)):
            path = join_path(where, index)
            for key in ("site", "replacement"):
                target = entry.get(key)
                if isinstance(target, str):
                    label = re.split(r"[+-]", target, maxsplit=1)[0]
                    self.check_label(label, labels, join_path(path, key), "label")
            cap = cast("str | int", entry["cap"])
            if isinstance(cap, str):
                self.check_cap(cap, join_path(path, "cap"))
            callback = cast("str | None", entry.get("callback"))
            if callback is not None:
                if callback not in self.catalog.callbacks:
                    self.problem("SPEC_BAD_REFERENCE", f"unknown callback {callback!r}",
                                 join_path(path, "callback"),
                                 did_you_mean(callback, self.catalog.callbacks))
                if entry.get("replacement") is not None:
                    self.problem("SPEC_BAD_REFERENCE",
                                 "an entry has either a replacement or a callback, not both",
                                 join_path(path, "replacement"))
            entries.append(RawAltEntry(
                site=cast("str | int", entry["site"]),
                replacement=cast("str | int | None", entry.get("replacement")),
                cap=cap,
                site_len=cast(int, entry["site_len"]),
                repl_len=cast(int, entry["repl_len"]),
                callback=callback,
                cb_bit=cast(bool, entry.get("cb_bit", False)),
                location=self.at(path),
            ))
        return tuple(entries)

    def payloads(self, raw: object, base_labels: set[str]) -> tuple[PayloadSpec, ...]:
        result: list[PayloadSpec] = []
        names: set[str] = set()
        for index, entry in enumerate(cast(list[Mapping[str, object]], raw or [])):
            path = join_path("payloads", index)
            name = str(entry["name"])
            if name in names:
                self.problem("SPEC_DUPLICATE_ID", f"payload {name!r} is defined twice",
                             join_path(path, "name"))
            names.add(name)
            text = self.block(entry["text"], join_path(path, "text"))
            assert text is not None  # required by the schema
            data = self.block(entry.get("data"), join_path(path, "data"))
            self.macro_uses(text)
            own = defined_labels(text) | defined_labels(data)
            replaces: list[FunctionReplacement] = []
            for r_index, item in enumerate(
                cast(list[Mapping[str, "str | None"]], entry.get("replaces", []))
            ):
                r_path = join_path(join_path(path, "replaces"), r_index)
                old, new = str(item["old"]), item["new"]
                self.check_label(old, base_labels, join_path(r_path, "old"), "base symbol")
                if new is not None:
                    self.check_label(new, own, join_path(r_path, "new"), "payload symbol")
                replaces.append(FunctionReplacement(old, new, self.at(r_path)))
            expect_old = cast(Mapping[str, str], entry.get("expect_old", {}))
            for symbol in expect_old:
                self.check_label(symbol, base_labels,
                                 join_path(join_path(path, "expect_old"), symbol), "base symbol")
            # A payload's own entries may name its labels and the base image's.
            alt_table = self.alt_table(entry.get("alt_table"), own | base_labels,
                                       join_path(path, "alt_table"))
            result.append(PayloadSpec(
                name=name, text=text, data=data, replaces=tuple(replaces),
                expect_old=MappingProxyType(dict(expect_old)), location=self.at(path),
                alt_table=alt_table,
                alt_table_trailing_bytes=cast(int, entry.get("alt_table_trailing_bytes", 0)),
            ))
        return tuple(result)

    def error(self, raw: object, path: str) -> ErrorExpectation | None:
        if raw is None:
            return None
        choices = cast(Mapping[str, object], raw).get("any_of")
        if isinstance(choices, list):  # several allowed outcomes
            allowed = [self._error_choice(cast(Mapping[str, str], choice),
                                          join_path(join_path(path, "any_of"), index), path)
                       for index, choice in enumerate(choices)]
            first = allowed[0]
            return ErrorExpectation(first.code, first.phase, self.at(path),
                                    tuple((e.code, e.phase) for e in allowed[1:]))
        return self._error_choice(cast(Mapping[str, str], raw), path, path)

    def _error_choice(self, entry: Mapping[str, str], path: str,
                      section: str) -> ErrorExpectation:
        code = entry["code"]
        if code not in ERROR_CODES:
            self.problem("SPEC_UNKNOWN_CODE", f"{code!r} is not a registered error code",
                         join_path(path, "code"), did_you_mean(code, ERROR_CODES))
        allowed = _PHASE_OF_SECTION[section]
        phase = cast(ExpectPhase, entry.get("phase", allowed[0]))
        if phase not in allowed:
            self.problem("SPEC_SCHEMA",
                         f"an error under {section.rpartition('.')[0]} must have phase "
                         f"{' or '.join(allowed)}, not {phase!r}", join_path(path, "phase"))
        return ErrorExpectation(code, phase, self.at(path))

    def phase(
        self, raw: object, path: str, labels: set[str], ncpus: int
    ) -> PhaseExpectation | None:
        if raw is None:
            return None
        entry = cast(Mapping[str, object], raw)
        caps = None
        if "caps" in entry:
            caps = tuple(cast(list[str], entry["caps"]))
            for index, cap in enumerate(caps):
                self.check_cap(cap, join_path(join_path(path, "caps"), index), encoded=False)
        streams: list[StreamExpectation] = []
        for label, asm in cast(Mapping[str, object], entry.get("text", {})).items():
            label_path = join_path(join_path(path, "text"), label)
            self.check_label(label, labels, label_path, "label")
            # A string, or {any_of: [stream, ...]} where the architecture allows several.
            choices = (cast(list[str], cast(Mapping[str, object], asm)["any_of"])
                       if isinstance(asm, Mapping) else [cast(str, asm)])
            streams.append(StreamExpectation(label, choices[0],
                                             _first_line_location(self.document, label_path),
                                             tuple(choices[1:])))
        probes: list[ProbeSpec] = []
        for index, probe in enumerate(cast(list[Mapping[str, object]], entry.get("probes", []))):
            probe_path = join_path(join_path(path, "probes"), index)
            call = str(probe["call"])
            self.check_label(call, labels, join_path(probe_path, "call"), "probe function")
            cpus_raw = probe.get("cpus", "all")
            cpus: Literal["all"] | tuple[int, ...] = "all"
            if cpus_raw != "all":
                cpus = tuple(cast(list[int], cpus_raw))
                for cpu in cpus:
                    if cpu >= ncpus:
                        self.problem("SPEC_BAD_REFERENCE",
                                     f"probe CPU {cpu} does not exist (the case has {ncpus})",
                                     join_path(probe_path, "cpus"))
            fault = cast("str | None", probe.get("fault"))
            if fault is not None and fault not in FINDING_CODES:
                self.problem("SPEC_UNKNOWN_CODE", f"{fault!r} is not a registered finding code",
                             join_path(probe_path, "fault"), did_you_mean(fault, FINDING_CODES))
            probes.append(ProbeSpec(
                call=call, cpus=cpus,
                args=MappingProxyType(dict(cast(Mapping[str, int], probe.get("args", {})))),
                result=MappingProxyType(dict(cast(Mapping[str, int], probe.get("result", {})))),
                location=self.at(probe_path), fault=fault,
            ))
        findings = tuple(cast(list[str], entry.get("findings", [])))
        for index, code in enumerate(findings):
            if code not in FINDING_CODES:
                self.problem("SPEC_UNKNOWN_CODE", f"{code!r} is not a registered finding code",
                             join_path(join_path(path, "findings"), index),
                             did_you_mean(code, FINDING_CODES))
        return PhaseExpectation(
            caps=caps, text=tuple(streams), probes=tuple(probes), findings=findings,
            error=self.error(entry.get("error"), join_path(path, "error")),
            location=self.at(path),
        )

    def hotplug(self, raw: object, numbering: CpuNumbering) -> tuple[
            HotplugExpectation, ...]:
        result: list[HotplugExpectation] = []
        late = numbering.late_numbers
        for index, entry in enumerate(cast(list[Mapping[str, object]], raw or [])):
            path = join_path("expect.hotplug", index)
            ref = entry["cpu"]
            cpu_index = -1
            if isinstance(ref, int):
                cpu_index = ref
                if ref not in late:
                    self.problem("SPEC_BAD_REFERENCE",
                                 f"CPU {ref} is not a late CPU: CPUs count the platform "
                                 f"from 0, then late_cpus, so the late CPUs are "
                                 f"{late.start}..{late.stop - 1} (INTERPRETING.md §2)",
                                 join_path(path, "cpu"))
            else:
                matching = numbering.numbers_labelled(str(ref), late_only=True)
                if len(matching) != 1:
                    self.problem(
                        "SPEC_BAD_REFERENCE",
                        f"late CPU {ref!r} matches {len(matching)} entries of late_cpus; "
                        "use its CPU number", join_path(path, "cpu"),
                        did_you_mean(str(ref), [cpu.label for cpu in numbering.late]))
                else:
                    cpu_index = matching[0]
            verdict = cast(Literal["accepted", "refused"], entry["verdict"])
            raw_code = entry.get("code")
            codes = (cast(list[str], cast(Mapping[str, object], raw_code)["any_of"])
                     if isinstance(raw_code, Mapping) else [cast(str, raw_code)])
            code = codes[0]
            for one in codes:
                if verdict == "refused" and one not in _HOTPLUG_CODES:
                    self.problem("SPEC_UNKNOWN_CODE",
                                 f"a refused CPU needs a code, one of {', '.join(_HOTPLUG_CODES)}",
                                 join_path(path, "code") if one else path,
                                 did_you_mean(one or "", _HOTPLUG_CODES))
            if verdict == "accepted" and code is not None:
                self.problem("SPEC_SCHEMA", "an accepted CPU has no error code",
                             join_path(path, "code"))
            result.append(HotplugExpectation(cpu_index, verdict, code, self.at(path),
                                             tuple(codes[1:])))
        return tuple(result)

    # -- the whole case ---------------------------------------------------------
    def case(self) -> Case:
        doc = cast(Mapping[str, object], self.document.value)
        dialects = self.dialects(doc.get("dialects"))
        self.dialect_list = dialects
        requires = self.requires(doc.get("requires"))
        platform = self.cpus(doc["platform"], "platform")
        late_cpus = self.cpus(doc.get("late_cpus"), "late_cpus")
        if len(platform) + len(late_cpus) > MAX_CPUS:
            self.problem("SPEC_BAD_RANGE", f"more than {MAX_CPUS} CPUs", "platform")
        extra_caps = self.caps(doc.get("caps"))
        self.case_caps = {c.name for c in extra_caps}
        self.cap_names = set(known_capabilities(self.catalog)) | self.case_caps

        image_raw = cast(Mapping[str, object], doc["image"])
        text = self.block(image_raw["text"], "image.text")
        assert text is not None  # required by the schema
        data = self.block(image_raw.get("data"), "image.data")
        rodata = self.block(image_raw.get("rodata"), "image.rodata")
        self.macro_uses(text)
        base_labels = (defined_labels(text) | defined_labels(data) | defined_labels(rodata)
                       | HARNESS_SYMBOLS | set(self.catalog.callbacks))
        image = ImageSpec(text, data, rodata,
                          self.alt_table(image_raw.get("alt_table"), base_labels))
        payloads = self.payloads(doc.get("payloads"), base_labels)
        all_labels = set(base_labels)
        for payload in payloads:
            all_labels |= defined_labels(payload.text) | defined_labels(payload.data)

        expect_raw = cast(Mapping[str, object], doc["expect"])
        ncpus = len(platform) + len(late_cpus)
        late_raw = cast("Mapping[str, object] | None", expect_raw.get("late"))
        late = None
        if late_raw is not None:
            if not payloads:
                self.problem("SPEC_BAD_REFERENCE", "expect.late needs at least one payload",
                             "expect.late")
            late = LateExpectation(
                load=self.phase(late_raw.get("load"), "expect.late.load", all_labels, ncpus),
                apply=self.phase(late_raw.get("apply"), "expect.late.apply", all_labels, ncpus),
                revert=self.phase(late_raw.get("revert"), "expect.late.revert", all_labels,
                                  ncpus),
                location=self.at("expect.late"),
            )
        if "hotplug" in expect_raw and not late_cpus:
            self.problem("SPEC_BAD_REFERENCE", "expect.hotplug needs late_cpus",
                         "expect.hotplug")
        expect = Expectations(
            # Boot probes run after hot-plug: they may name (accepted) late CPUs too.
            boot=self.phase(expect_raw.get("boot"), "expect.boot", base_labels, ncpus),
            late=late,
            hotplug=self.hotplug(expect_raw.get("hotplug"),
                                 CpuNumbering(platform, late_cpus)),
            error=self.error(expect_raw.get("error"), "expect.error"),
            # Only CPU0 is up at this point, so probes may name CPU 0 alone.
            boot_cpu=self.phase(expect_raw.get("boot_cpu"), "expect.boot_cpu", base_labels, 1),
        )
        if expect.boot_cpu is not None and "two-pass" not in requires:
            self.problem("SPEC_SCHEMA", "expect.boot_cpu observes the boot-CPU pass: the case "
                         "must require two-pass", "expect.boot_cpu")
        if expect.error is not None and (expect.boot or expect.late or expect.hotplug
                                         or expect.boot_cpu):
            self.problem("SPEC_SCHEMA",
                         "a case that expects a load or build error cannot expect later phases",
                         "expect.error")
        options_raw = cast(Mapping[str, object], doc.get("options", {}))
        options = BootOptions(
            hmp_unsafe=cast(bool, options_raw.get("hmp_unsafe", True)),
            park_dcache_mismatch=cast(bool, options_raw.get("park_dcache_mismatch", False)),
            smccc_conduit=cast(Literal["hvc", "smc"], options_raw.get("smccc_conduit", "hvc")),
            payload_offset=cast(int, options_raw.get("payload_offset", DEFAULT_PAYLOAD_OFFSET)),
        )
        return Case(
            path=self.document.file,
            id=str(doc["id"]),
            title=str(doc["title"]),
            refs=tuple(cast(list[str], doc["refs"])),
            requires=requires,
            dialects=dialects,
            platform=platform,
            image=image,
            expect=expect,
            late_cpus=late_cpus,
            caps=extra_caps,
            payloads=payloads,
            options=options,
            location=Location(file=self.document.file, line=1, column=1),
            locations=MappingProxyType({k: v for k, v in self.document.locations.items() if k}),
        )


def _case_schema(catalog_root: Path | None) -> Path:
    if catalog_root is not None:
        candidate = schema_path(catalog_root, "case")
        if candidate.is_file():
            return candidate
    return schema_path(bundled_corpus(), "case")


def read_case(
    path: Path, catalog: Catalog, *, corpus_root: Path | None = None
) -> tuple[Case | None, list[SpecError]]:
    """Load a case collecting every problem; the case is None if there is any.

    The case resolved against ``catalog`` may come from the kept ones
    (:mod:`.kept_resolved`), else its parsed and validated document from the document
    cache (:mod:`.document_cache`).
    """
    with collector.paused():  # (parsing, validating and resolving make no cycles)
        file, schema = display_path(path), _case_schema(corpus_root)
        try:
            read = document_key(path, file, schema)
            key = kept_resolved.case_key(read[1], catalog)
            kept = kept_resolved.load(key, Case)
            if kept is not None:
                return kept, []
            document, problems = load_valid_document(path, file, schema, read=read)
        except SpecError as exc:
            return None, [exc]
        too_new = _too_new(document)
        if too_new is not None:  # (a kept document is checked here too)
            return None, [too_new]
        case, problems = _resolve_valid(document, problems, catalog)
        if case is not None:
            kept_resolved.keep(key, case)
        return case, problems


def resolve_document(
    document: LocatedDocument, catalog: Catalog, *, corpus_root: Path | None = None
) -> tuple[Case | None, list[SpecError]]:
    """Validate and resolve an already parsed case document."""
    too_new = _too_new(document)
    if too_new is not None:
        return None, [too_new]
    return _resolve_valid(document, validate(document, _case_schema(corpus_root)), catalog)


def _too_new(document: LocatedDocument) -> SpecError | None:
    value = document.value
    if isinstance(value, Mapping):
        version = value.get("format")
        if isinstance(version, int) and not isinstance(version, bool) and version > CASE_FORMAT:
            return SpecError(
                "SPEC_VERSION",
                f"case format {version} is newer than this loader's format {CASE_FORMAT}",
                location=document.location("format"),
            )
    return None


def _resolve_valid(document: LocatedDocument, problems: list[SpecError],
                   catalog: Catalog) -> tuple[Case | None, list[SpecError]]:
    """The schema ``problems`` if any, else the catalog's, else the case."""
    if problems:
        return None, problems
    resolver = _Resolver(document, catalog)
    case = resolver.case()
    if resolver.problems:
        ordered = sorted(resolver.problems, key=lambda p: (p.location.line or 0,
                                                           p.location.column or 0))
        return None, ordered
    return case, []


def load_case(path: Path, catalog: Catalog) -> Case:
    """Load one case file, resolved against ``catalog``; raises a coded SpecError."""
    case, problems = read_case(Path(path), catalog)
    if problems:
        raise problems[0]
    assert case is not None  # read_case returns a case whenever it reports no problem
    return case


__all__ = ["CASE_FORMAT", "HARNESS_SYMBOLS", "load_case", "read_case",
           "resolve_document"]
