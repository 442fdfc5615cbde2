"""Settings: TOML -> frozen dataclasses, env overrides, clear errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from indexer.settings import SettingsError, load_settings
from tests.conftest import REPO


def test_repo_config_loads_and_documents_every_key():
    s = load_settings(REPO / "config.toml", env={})
    assert s.model.backbone == "efficientnet_lite0"
    assert s.database_url.startswith("sqlite:////") and s.database_url.endswith("var/lookalike.db")
    text = (REPO / "config.toml").read_text()
    readme = (REPO / "README.md").read_text()
    for section in ("database", "catalog", "model", "index", "milvus", "pipeline", "web"):
        for f in dataclasses.fields(getattr(s, section)):
            assert f"\n{f.name} = " in text, f"[{section}] {f.name} missing from config.toml"
            assert f"`{section}.{f.name}`" in readme, f"[{section}] {f.name} not documented in README"


def test_env_overrides_any_key_with_types(tmp_path: Path):
    env = {"LOOKALIKE_DATABASE__URL": "sqlite:///x.db", "LOOKALIKE_MODEL__BATCH_SIZE": "7",
           "LOOKALIKE_INDEX__DIR": "/tmp/ix", "OTHER": "ignored"}
    s = load_settings(REPO / "config.toml", env=env)
    assert s.database.url == "sqlite:///x.db" and s.model.batch_size == 7 and s.index_dir == Path("/tmp/ix")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.model.batch_size = 3  # type: ignore[misc]


@pytest.mark.parametrize("text,env,message", [
    ("[model]\nbatch_size = 'many'\n", {}, "expected an integer"),
    ("[model]\nbatchsize = 3\n", {}, "unknown key"),
    ("[nosuch]\nx = 1\n", {}, "unknown config section"),
    ("[model\n", {}, "not valid TOML"),
    ("", {"LOOKALIKE_NOSUCH__X": "1"}, "unknown config section"),
    ("", {"LOOKALIKE_MODEL__INPUT_SIZE": "big"}, "expected an integer"),
])
def test_bad_config_gives_clear_error(tmp_path: Path, text, env, message):
    p = tmp_path / "c.toml"
    p.write_text(text)
    with pytest.raises(SettingsError, match=message):
        load_settings(p, env=env)


def test_missing_file(tmp_path: Path):
    with pytest.raises(SettingsError, match="not found"):
        load_settings(tmp_path / "nope.toml", env={})


def test_relative_paths_resolve_against_config_folder(tmp_path: Path):
    p = tmp_path / "sub" / "c.toml"
    p.parent.mkdir()
    p.write_text('[index]\ndir = "idx"\n[database]\nurl = "sqlite:///data/x.db"\n')
    s = load_settings(p, env={})
    assert s.index_dir == tmp_path / "sub" / "idx"
    assert s.database_url == f"sqlite:///{tmp_path / 'sub' / 'data' / 'x.db'}"
