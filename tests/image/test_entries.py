"""Entry fields: images and payloads refuse and mark callback entries the same way."""

from __future__ import annotations

import pytest
from conftest import make_case, numbering_for

from pytest_altpatch.cases.model import Dialect, PayloadSpec, SourceBlock
from pytest_altpatch.dialects import CB_BIT
from pytest_altpatch.errors import BuildError, Location
from pytest_altpatch.image.builder import build_image
from pytest_altpatch.image.model import Image
from pytest_altpatch.image.objects import RelocatableObject
from pytest_altpatch.image.payload import build_payload

#: A callback alternative without a capability, in both spellings.
CAPLESS_CALLBACKS = (
    'ALTERNATIVE_CB("nop", alt_cb_patch_nops)\n',
    "alternative_cb alt_cb_patch_nops\n nop\nalternative_cb_end\n",
)
PAYLOAD_LINE = 5


def base_image(dialect: Dialect) -> Image:
    return build_image(make_case("fn:\n ret\n"), dialect=dialect,
                       numbering=numbering_for(dialect))


def payload_of(text: str, image: Image) -> RelocatableObject:
    spec = PayloadSpec("lp", SourceBlock("new_fn:\n" + text + " ret\n",
                                         Location(file="p.yaml", line=PAYLOAD_LINE)))
    return build_payload(spec, image)


def cap_field_of(obj: RelocatableObject) -> int:
    (table,) = (s for s in obj.sections if s.name == ".altinstructions")
    return int.from_bytes(table.content[8:10], "little")


@pytest.mark.parametrize("text", CAPLESS_CALLBACKS)
@pytest.mark.parametrize("dialect", ["linux-6.1", "strict"])
def test_image_refuses_a_bit15_callback_without_a_capability(dialect: Dialect,
                                                             text: str) -> None:
    with pytest.raises(BuildError) as caught:
        build_image(make_case(text), dialect=dialect, numbering=numbering_for(dialect))
    assert caught.value.code == "BUILD_MACRO"
    assert caught.value.message == (f"dialect {dialect} needs a capability for callback "
                                    "'alt_cb_patch_nops'")
    assert caught.value.location.line == 20


@pytest.mark.parametrize("text", CAPLESS_CALLBACKS)
@pytest.mark.parametrize("dialect", ["linux-6.1", "strict"])
def test_payload_refuses_a_bit15_callback_without_a_capability(dialect: Dialect,
                                                               text: str) -> None:
    with pytest.raises(BuildError) as caught:
        payload_of(text, base_image(dialect))
    assert caught.value.code == "BUILD_MACRO"
    assert caught.value.message == (f"dialect {dialect} needs a capability for callback "
                                    "'alt_cb_patch_nops'")
    assert (caught.value.location.file, caught.value.location.line) == (
        "p.yaml", PAYLOAD_LINE + 1)


@pytest.mark.parametrize("text", CAPLESS_CALLBACKS)
@pytest.mark.parametrize("dialect", ["linux-4.9", "xen-4.17"])
def test_payload_callback_without_a_capability_is_ncaps_where_the_dialect_says_so(
        dialect: Dialect, text: str) -> None:
    image = base_image(dialect)
    assert cap_field_of(payload_of(text, image)) == image.numbering.ncaps
    assert image.numbering.ncaps == 3


def test_payload_callback_with_a_capability_keeps_it_under_bit_15() -> None:
    obj = payload_of('ALTERNATIVE_CB("nop", CAP_C, alt_cb_patch_nops)\n',
                     base_image("linux-6.1"))
    assert cap_field_of(obj) == CB_BIT | 2
