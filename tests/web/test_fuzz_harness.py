"""The optional atheris harnesses in fuzz/: their fuzz targets run on their seeds without atheris (so they cannot
rot), they report what they must report, and the decode harness runs under atheris where it is installed."""

from __future__ import annotations

import importlib.util
import subprocess

import pytest

import fuzz.atheris_api as api_harness
import fuzz.atheris_decode as decode_harness
from tests.conftest import PYTHON, REPO

pytestmark = pytest.mark.reliability("fuzz")


def test_decode_target_runs_on_its_seeds(scoreboard):
    seeds = decode_harness.seeds()
    for data in seeds:
        decode_harness.test_one_input(data)
    scoreboard.cases(len(seeds))


def test_decode_target_reports_a_foreign_error(monkeypatch):
    import indexer.catalog.images

    def broken(data, max_pixels):
        raise OSError("a decoder error that leaked")

    monkeypatch.setattr(indexer.catalog.images, "decode_image", broken)
    with pytest.raises(OSError, match="leaked"):
        decode_harness.test_one_input(decode_harness.seeds()[5])


@pytest.fixture(scope="module")
def outfit_client(tmp_path_factory, shared_data, small_embedder):
    from tests.outfit_fixtures import outfit_catalog
    from tests.web.conftest import make_test_app

    fixture = outfit_catalog(tmp_path_factory, small_embedder)
    photo = sorted((fixture.csv.parent / "images").iterdir())[0].read_bytes()
    return make_test_app(fixture.settings, small_embedder).test_client(), photo


def test_api_target_runs_on_its_seeds(outfit_client, scoreboard):
    client, photo = outfit_client
    seeds = api_harness.seeds()
    assert {data[0] for data in seeds} == set(range(len(api_harness.OPERATIONS))), "an operation has no seed"
    statuses = []
    for data in seeds:
        op, kwargs = api_harness.decode_request(data, photo)
        resp = client.open(**kwargs)
        api_harness.check_answer(op, resp)
        statuses.append((op, resp.status_code))
    scoreboard.cases(len(seeds))
    # The well-formed seeds get through the parsers (else the fuzzer would start from rejections only).
    ok = {op for op, status in statuses if status == 200}
    assert {"search-form", "search-json", "item", "similar", "item-outfit", "outfit-form", "outfit-json",
            "analytics-runs"} <= ok, statuses
    for data in seeds[:3]:
        api_harness.test_one_input(data, client, photo)


def test_api_target_reports_a_5xx(outfit_client, monkeypatch):
    import web.api.params

    client, photo = outfit_client
    monkeypatch.setattr(web.api.params, "_parse_float", lambda name, value: float(value))  # a parser that leaks
    threshold = api_harness.SEARCH.index("threshold") + len(api_harness.SEARCH)  # its one-byte name
    with pytest.raises(api_harness.Finding, match="500"):
        api_harness.test_one_input(bytes([0, threshold]) + b"\x00abc", client, photo)  # search form, threshold=abc


def test_decode_harness_runs_under_atheris_or_skips_cleanly(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    out = subprocess.run([PYTHON, str(REPO / "fuzz" / "atheris_decode.py"), "-atheris_runs=300",
                          f"-artifact_prefix={tmp_path}/", str(corpus)], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    if importlib.util.find_spec("atheris") is None:
        assert "atheris is not installed" in out.stdout and "Skipped" in out.stdout
    else:
        assert "Done 300 in" in out.stderr, out.stderr[-2000:]
        assert not list(tmp_path.glob("crash-*"))
