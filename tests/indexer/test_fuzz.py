"""Fuzzing (hypothesis): the upload decoder and the CLI's parameter parser only ever raise their own errors."""

from __future__ import annotations

import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from indexer.catalog.images import ImageDecodeError, crop_box, decode_image

pytestmark = pytest.mark.reliability("fuzz")


def _jpeg(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (200, 10, 10)).save(buf, "JPEG")
    return buf.getvalue()


SLOW_OK = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
SEEDS = [_jpeg(8, 8), _jpeg(1, 30)]


@settings(max_examples=300, deadline=None, suppress_health_check=SLOW_OK)
@given(st.binary(max_size=2048))
def test_decoder_on_random_bytes(scoreboard, data):
    scoreboard.cases(1)
    try:
        img = decode_image(data, max_pixels=1_000_000)
    except ImageDecodeError as exc:
        assert str(exc)
        return
    assert img.mode == "RGB" and img.size[0] >= 1


@settings(max_examples=300, deadline=None, suppress_health_check=SLOW_OK)
@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=8),
       st.integers(0, 4000))
def test_decoder_on_mutated_jpegs(scoreboard, seed, flips, cut):
    scoreboard.cases(1)
    data = bytearray(seed)
    for pos, val in flips:
        data[pos % len(data)] = val
    data = bytes(data[: max(1, len(data) - cut % len(data))])
    try:
        img = decode_image(data, max_pixels=1_000_000)
    except ImageDecodeError:
        return
    assert img.mode == "RGB"


@settings(max_examples=300, deadline=None, suppress_health_check=SLOW_OK)
@given(st.tuples(*(st.floats(allow_nan=True, allow_infinity=True) for _ in range(4))))
def test_crop_box_only_raises_its_own_error(scoreboard, box):
    scoreboard.cases(1)
    img = Image.new("RGB", (40, 30))
    try:
        out = crop_box(img, box)
    except ImageDecodeError:
        return
    assert out.size[0] >= 1 and out.size[1] >= 1


@settings(max_examples=300, deadline=None, suppress_health_check=SLOW_OK)
@given(st.lists(st.text(max_size=20), max_size=5))
def test_cli_filter_parser(scoreboard, values):
    from indexer.cli_support import parse_filters

    scoreboard.cases(1)
    try:
        out = parse_filters(tuple(values))
    except ValueError as exc:
        assert "column=value" in str(exc)
        return
    assert all(k and v for k, vs in out.items() for v in vs)
