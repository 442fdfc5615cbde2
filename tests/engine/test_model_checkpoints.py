"""Checkpoints: save/load round trip, manifest, crash-safe writes, create_embedder(checkpoint=...)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from engine import EmbedderError, EmbeddingNet, ProjectionHead, create_embedder, load_checkpoint, save_checkpoint
from engine.files import file_sha256, write_atomically
from engine.models.checkpoints import manifest_path

SIZE = 64


def trained_net(hidden: int = 0) -> tuple[EmbeddingNet, dict]:
    """A 'fine-tuned' lite0: random backbone, a head, and some weights nudged as training would."""
    base = create_embedder("efficientnet_lite0", weights="random", input_size=SIZE, device="cpu")
    head = ProjectionHead(base.dim, 32, hidden=hidden)
    net = EmbeddingNet(base.module.backbone, head)
    with torch.no_grad():
        net.backbone._conv_head.weight.mul_(1.01)
    meta = {"backbone": "efficientnet_lite0", "input_size": SIZE, "head": head.spec, "epochs": 3}
    return net, meta


def test_projection_head_specs() -> None:
    linear, mlp = ProjectionHead(16, 4), ProjectionHead(16, 4, hidden=8)
    assert linear.spec == {"type": "linear", "in_dim": 16, "out_dim": 4, "hidden": 0}
    assert mlp.spec["type"] == "mlp"
    assert mlp(torch.zeros(2, 16)).shape == (2, 4)
    assert ProjectionHead.from_spec(mlp.spec).spec == mlp.spec
    with pytest.raises(ValueError):
        ProjectionHead.from_spec({"type": "mlp", "in_dim": 16, "out_dim": 4})


def test_round_trip_and_manifest(tmp_path: Path) -> None:
    net, meta = trained_net()
    path = tmp_path / "ckpt" / "model.pt"
    manifest = save_checkpoint(path, net.state_dict(), meta)
    on_disk = json.loads(manifest_path(path).read_text())
    assert on_disk == manifest
    assert manifest["sha256"] == file_sha256(path) and manifest["bytes"] == path.stat().st_size
    assert manifest["meta"] == meta
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.pt", "model.pt.json"]  # no temp files left

    loaded = load_checkpoint(path)
    assert loaded["meta"] == meta and loaded["sha256"] == manifest["sha256"]
    assert loaded["state_dict"].keys() == net.state_dict().keys()
    assert all(torch.equal(loaded["state_dict"][k], v) for k, v in net.state_dict().items())


@pytest.mark.parametrize("hidden", [0, 24])
def test_create_embedder_from_checkpoint(tmp_path: Path, hidden: int) -> None:
    net, meta = trained_net(hidden)
    path = tmp_path / "model.pt"
    save_checkpoint(path, net.state_dict(), meta)
    emb = create_embedder("efficientnet_lite0", checkpoint=str(path), input_size=SIZE, device="cpu")
    assert emb.dim == 32 and emb.head_spec == meta["head"]
    assert emb.checkpoint == str(path) and emb.describe()["head"] == meta["head"]
    batch = torch.randn(3, 3, SIZE, SIZE)
    with torch.no_grad():
        expected = torch.nn.functional.normalize(net.eval()(batch), dim=1).numpy()
    np.testing.assert_allclose(emb.embed_tensors(batch), expected, atol=1e-5)

    bare = create_embedder("efficientnet_lite0", weights="random", input_size=SIZE, device="cpu")
    assert emb.fingerprint != bare.fingerprint
    again = create_embedder("efficientnet_lite0", checkpoint=str(path), input_size=SIZE, device="cpu")
    assert again.fingerprint == emb.fingerprint


def test_checkpoint_backbone_wins_over_name(tmp_path: Path) -> None:
    base = create_embedder("resnet18", weights="random", input_size=SIZE, device="cpu")
    net = EmbeddingNet(base.module.backbone, ProjectionHead(512, 16))
    path = tmp_path / "r18.pt"
    save_checkpoint(path, net.state_dict(), {"backbone": "resnet18", "input_size": SIZE, "head": net.head.spec})
    emb = create_embedder("efficientnet_lite0", checkpoint=str(path), input_size=SIZE, device="cpu")
    assert emb.name == "resnet18" and emb.dim == 16


def test_corrupted_or_mismatched_checkpoints_are_refused(tmp_path: Path) -> None:
    net, meta = trained_net()
    path = tmp_path / "model.pt"
    save_checkpoint(path, net.state_dict(), meta)
    with path.open("r+b") as f:  # flip a byte: the manifest's sha256 no longer matches
        f.seek(-10, 2)
        byte = f.read(1)
        f.seek(-10, 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(EmbedderError, match="sha256"):
        load_checkpoint(path)

    wrong_head = dict(meta, head={"type": "linear", "in_dim": 1280, "out_dim": 7, "hidden": 0})
    save_checkpoint(path, net.state_dict(), wrong_head)
    with pytest.raises(EmbedderError, match="model.checkpoint"):
        create_embedder(checkpoint=str(path), input_size=SIZE, device="cpu")

    with pytest.raises(EmbedderError, match="model.checkpoint"):
        create_embedder(checkpoint=str(tmp_path / "missing.pt"))
    with pytest.raises(ValueError, match="backbone"):
        save_checkpoint(path, net.state_dict(), {"head": None})
    with pytest.raises(ValueError, match="JSON"):
        save_checkpoint(path, net.state_dict(), {"backbone": "resnet18", "head": None, "when": object()})


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "file.bin"
    write_atomically(path, lambda f: f.write(b"old"))

    def crash(f) -> None:
        f.write(b"half of the new")
        raise KeyboardInterrupt  # killed mid-write

    with pytest.raises(KeyboardInterrupt):
        write_atomically(path, crash)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]
