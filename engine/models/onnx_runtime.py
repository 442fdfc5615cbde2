"""ONNX Runtime as the Embedder's forward pass on the CPU: export, cache, verify, run.

``attach_onnx_runtime(embedder, cache_dir, ...)`` exports the embedder's network (backbone + head + taxonomy posterior)
to ONNX once per model fingerprint (``<cache_dir>/<fingerprint>.onnx``, or ``<fingerprint>.int8.onnx`` for the
dynamically quantized variant), writes it crash-safely with a JSON manifest beside it (sha256, fingerprint, opset,
versions), checks the file's sha256 before every load (a corrupt or truncated file is rebuilt, never served), and
compares ONNX Runtime with torch on a probe batch before using it. Any failure (onnxruntime not installed, export
error, parity below the threshold) leaves the embedder on torch with one warning: the vectors are the same either way,
so the fingerprint, the index and the stored vectors stay valid whichever runtime runs.

May import: torch, numpy, onnxruntime/onnx (lazily), engine.files. Never the embedder module (it is duck-typed: any
object with ``module``, ``fingerprint``, ``input_size``, ``embed_tensors`` and ``use_forward``).
"""

from __future__ import annotations

import io
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.files import file_sha256, write_bytes_atomically

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "torch", "onnxruntime", "onnxruntime-int8")
OPSET = 17
# 2: the graph also outputs the last spatial feature map (street-photo localisation reads it).
MANIFEST_VERSION = 2
# The exported graph must give the same vectors as torch (measured 0.9999999 for the served model); int8 weights
# change the vectors on purpose, so they only have to stay close (their recall cost is measured in BENCHMARKS.md).
MIN_COSINE = {"onnxruntime": 0.9999, "onnxruntime-int8": 0.98}
_PROBE_BATCH = 3  # differs from the traced batch of 2, so the probe also checks the dynamic batch axis
_PROBE_SEED = 1234


class OnnxRuntimeUnavailable(RuntimeError):
    """ONNX Runtime cannot serve this model here; the message says why in one line."""


def onnxruntime_installed() -> bool:
    """True when ``import onnxruntime`` works."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_runtime(runtime: str, device: torch.device) -> str:
    """"auto" -> "onnxruntime" on the CPU when it is installed, else "torch"; other values are checked.

    Raises:
        ValueError: For a name not in ``RUNTIMES``.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r} (model.runtime): use one of {', '.join(RUNTIMES)}")
    if runtime == "auto":
        return "onnxruntime" if device.type == "cpu" and onnxruntime_installed() else "torch"
    return runtime


@dataclass
class OnnxForward:
    """A loaded ONNX Runtime session mapping a float32 NCHW batch to the network's un-normalised features.

    Attributes:
        runtime: "onnxruntime" or "onnxruntime-int8".
        fingerprint: The embedder fingerprint the graph was exported from; the embedder uses torch once its own
            fingerprint differs (e.g. after fine-tuning in place).
        path: The cached .onnx file.
        cosine: Lowest cosine similarity to torch on the probe batch.
    """

    session: Any
    input_name: str
    runtime: str
    fingerprint: str
    path: Path
    cosine: float
    # (N, C, H, W) output of the network's last spatial layer for the last batch run, when the graph has it; read
    # by street-photo localisation right after the forward pass on the same thread (see Embedder.feature_map).
    feature_map: np.ndarray | None = None

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        arr = np.ascontiguousarray(batch.detach().to("cpu", torch.float32).numpy())
        outputs = self.session.run(None, {self.input_name: arr})
        self.feature_map = outputs[1] if len(outputs) > 1 else None
        return torch.from_numpy(outputs[0])


def onnx_path(cache_dir: Path, fingerprint: str, runtime: str) -> Path:
    """Where the graph for ``fingerprint`` is cached: ``<fingerprint>.onnx`` or ``<fingerprint>.int8.onnx``."""
    suffix = ".int8.onnx" if runtime == "onnxruntime-int8" else ".onnx"
    return Path(cache_dir) / f"{fingerprint}{suffix}"


def manifest_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


class _WithFeatureMap(torch.nn.Module):
    """The network, also returning the output of its last submodule (in call order) that is an (N, C, H, W) map
    with H, W > 1: the layer ``engine.localize.find_feature_layer`` picks for the activation crop."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        maps: list[torch.Tensor] = []

        def hook(_m: torch.nn.Module, _inp: object, out: object) -> None:
            if isinstance(out, torch.Tensor) and out.ndim == 4 and out.shape[2] > 1 and out.shape[3] > 1:
                maps.append(out)

        handles = [sub.register_forward_hook(hook) for name, sub in self.net.named_modules() if name]
        try:
            features = self.net(images)
        finally:
            for handle in handles:
                handle.remove()
        return (features, maps[-1]) if maps else (features,)


def export_onnx(module: torch.nn.Module, input_size: int) -> bytes:
    """The module (in eval mode, on the CPU copy) as an ONNX graph with a dynamic batch axis, opset ``OPSET``.

    Outputs: ``features`` (what the module returns) and, for networks with spatial maps, ``feature_map`` (the last
    one), so that localisation does not need a second, torch, forward pass."""
    import copy

    net = _WithFeatureMap(copy.deepcopy(module).to("cpu", memory_format=torch.contiguous_format).eval()).eval()
    example = torch.zeros(2, 3, input_size, input_size)
    with torch.no_grad():
        n_outputs = len(net(example))
    names = ["features", "feature_map"][:n_outputs]
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # The legacy exporter's deprecation notice and the tracer's notes on the "same" padding, which is computed
        # from the fixed input size: the spatial size is a constant of the graph, the batch axis stays dynamic.
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (example,), buf, opset_version=OPSET, dynamo=False, input_names=["images"],
                          output_names=names, dynamic_axes={"images": {0: "batch"}, **{n: {0: "batch"} for n in names}})
    return buf.getvalue()


def quantize_int8(fp32: bytes) -> bytes:
    """Dynamic int8 quantization of the graph's weights (onnxruntime.quantization.quantize_dynamic)."""
    import tempfile

    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="lookalike-onnx-") as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(fp32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_dynamic(src, dst, weight_type=QuantType.QUInt8)
        return dst.read_bytes()


def _cached_is_valid(path: Path, fingerprint: str) -> bool:
    """The cached file exists, its manifest is of this version and names this fingerprint, and its bytes hash to
    the manifest's sha256."""
    try:
        manifest = json.loads(manifest_path(path).read_text())
        return (path.is_file() and manifest.get("version") == MANIFEST_VERSION
                and manifest.get("fingerprint") == fingerprint and manifest.get("sha256") == file_sha256(path))
    except (OSError, ValueError, AttributeError):
        return False


def build_onnx_file(embedder: Any, path: Path, runtime: str) -> None:
    """Export (and for int8 quantize) the embedder's network and write it + its manifest crash-safely."""
    import onnxruntime

    data = export_onnx(embedder.module, embedder.input_size)
    if runtime == "onnxruntime-int8":
        data = quantize_int8(data)
    write_bytes_atomically(path, data)
    manifest = {"version": MANIFEST_VERSION, "fingerprint": embedder.fingerprint, "runtime": runtime,
                "sha256": file_sha256(path), "bytes": len(data), "opset": OPSET, "input_size": embedder.input_size,
                "torch": torch.__version__, "onnxruntime": onnxruntime.__version__}
    # The manifest is written after the graph: a crash between the two leaves a graph without a (matching) manifest,
    # which the next load treats as missing and rebuilds.
    write_bytes_atomically(manifest_path(path), (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())


def _open_session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(0, int(threads))  # 0 = ONNX Runtime's default (all physical cores)
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Worker threads sleep between parallel sections instead of spin-waiting: the forward pass shares the cores with
    # decode, SQL and request threads, and spinning burned ~14% more CPU per batch of 64 for the same wall time,
    # CPU those threads needed (a single photo's forward pass waits ~1 ms longer to wake them; BENCHMARKS.md).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3  # errors only; the parity probe below decides whether the session is used
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def probe_cosine(embedder: Any, forward: Any) -> float:
    """Lowest cosine between torch's and ``forward``'s features on a seeded probe batch at the model's input size."""
    gen = torch.Generator().manual_seed(_PROBE_SEED)
    batch = torch.randn(_PROBE_BATCH, 3, embedder.input_size, embedder.input_size, generator=gen)
    module = embedder.module
    with torch.inference_mode():
        ref = module(batch.to(embedder.device, memory_format=embedder.memory_format)).float().cpu()
    got = forward(batch).float()
    cos = torch.nn.functional.cosine_similarity(ref, got, dim=1)
    return float(cos.min()) if torch.isfinite(cos).all() else float("-inf")


def load_onnx_forward(embedder: Any, cache_dir: str | Path, runtime: str = "onnxruntime",
                      threads: int = 0) -> OnnxForward:
    """The cached graph for the embedder's fingerprint (built when missing, stale or corrupt), verified against torch.

    Raises:
        OnnxRuntimeUnavailable: onnxruntime is not installed, the export or session failed, or parity is below
            ``MIN_COSINE[runtime]``.
    """
    if runtime not in MIN_COSINE:
        raise ValueError(f"not an ONNX runtime: {runtime!r}")
    if not onnxruntime_installed():
        raise OnnxRuntimeUnavailable("onnxruntime is not installed (pip install onnxruntime)")
    fingerprint = embedder.fingerprint
    path = onnx_path(Path(cache_dir), fingerprint, runtime)
    try:
        built = False
        if not _cached_is_valid(path, fingerprint):
            if path.exists():
                log.info("cached ONNX graph %s does not match its manifest; rebuilding it", path)
            build_onnx_file(embedder, path, runtime)
            built = True
        try:
            session = _open_session(path, threads)
        except Exception:  # noqa: BLE001 - a cached file ONNX Runtime cannot read is rebuilt once
            if built:
                raise
            log.info("cached ONNX graph %s cannot be loaded; rebuilding it", path)
            build_onnx_file(embedder, path, runtime)
            session = _open_session(path, threads)
    except Exception as exc:  # noqa: BLE001 - export and ORT raise many types; each means "use torch"
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise OnnxRuntimeUnavailable(f"exporting or loading the ONNX graph failed: {first_line}") from exc
    forward = OnnxForward(session, session.get_inputs()[0].name, runtime, fingerprint, path, cosine=float("nan"))
    forward.cosine = probe_cosine(embedder, forward)
    if not forward.cosine >= MIN_COSINE[runtime]:
        raise OnnxRuntimeUnavailable(f"ONNX Runtime's output differs from torch's (cosine {forward.cosine:.6f} < "
                                     f"{MIN_COSINE[runtime]})")
    return forward


def attach_onnx_runtime(embedder: Any, runtime: str, cache_dir: str | Path, threads: int = 0) -> str:
    """Put ONNX Runtime behind the embedder's forward pass when ``runtime`` asks for it; returns the runtime in use.

    Args:
        embedder: An Embedder (anything with ``module``, ``fingerprint``, ``input_size``, ``device`` and
            ``use_forward``).
        runtime: One of ``RUNTIMES``; "auto" = ONNX Runtime on the CPU when installed, torch on CUDA.
        cache_dir: Folder of the cached graphs (model.onnx_dir).
        threads: ONNX Runtime intra-op threads; 0 = all cores.

    Returns:
        "torch", "onnxruntime" or "onnxruntime-int8". On any failure it is "torch" and one warning says why.
    """
    resolved = resolve_runtime(runtime, embedder.device)
    if resolved == "torch":
        embedder.use_forward(None)
        return "torch"
    if embedder.device.type != "cpu":
        log.warning("model.runtime %r runs on the CPU only; the model is on %s, using torch", runtime,
                    embedder.device)
        embedder.use_forward(None)
        return "torch"
    try:
        forward = load_onnx_forward(embedder, cache_dir, resolved, threads)
    except OnnxRuntimeUnavailable as exc:
        log.warning("model.runtime %r: %s; using torch", runtime, exc)
        embedder.use_forward(None)
        return "torch"
    embedder.use_forward(forward)
    return resolved
