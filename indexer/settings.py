"""Settings: config.toml -> frozen dataclasses, with LOOKALIKE_<SECTION>__<KEY> overrides.

This is the only module that reads the environment (besides the config path in manage.py).
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

ENV_PREFIX = "LOOKALIKE_"
REPO_DIR = Path(__file__).resolve().parents[1]
# Where catalog.default_csv falls back to when the configured file does not exist, in this order: the full catalog
# beside the repository (the project machines' ../shared), the one `manage.py fetch-data fashion-product-images`
# writes (relative to the config file's folder, like every configured path), then the demo catalog committed in the
# repository (data/demo-catalog/README.md).
SHARED_CATALOG_CSV = REPO_DIR.parent / "shared" / "data" / "fashion-product-images" / "catalog.csv"
FETCHED_CATALOG_DIR = "data/fashion-product-images"
DEMO_CATALOG_CSV = REPO_DIR / "data" / "demo-catalog" / "catalog.csv"


class SettingsError(ValueError):
    """A config file or override that cannot be used; the message says which key and why."""


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = "sqlite:///var/lookalike.db"
    busy_timeout_s: int = 30


@dataclass(frozen=True)
class CatalogSettings:
    default_csv: str = "../shared/data/fashion-product-images/catalog.csv"
    images_root: str = ""
    # `manage.py fetch-data fashion-product-images`: the public archive's URL and its sha256 (empty = not checked).
    fetch_url: str = "https://www.kaggle.com/api/v1/datasets/download/paramaggarwal/fashion-product-images-small"
    fetch_sha256: str = ""


@dataclass(frozen=True)
class DefaultCatalog:
    """The catalog `index` imports when given none: its CSV and which fallback it is."""

    path: Path
    # "configured" (catalog.default_csv exists), "shared" (../shared beside the repo), "fetched" (fetch-data's
    # output in data/), "demo" (data/demo-catalog, committed), or "missing" (none exists: the configured path).
    kind: str

    @property
    def description(self) -> str:
        return {"configured": "the configured catalog (catalog.default_csv)",
                "shared": "the full Fashion Product Images catalog beside the repository",
                "fetched": "the full Fashion Product Images catalog (downloaded by fetch-data)",
                "demo": "the demo catalog committed in the repository",
                "missing": "the configured catalog (catalog.default_csv), which does not exist"}[self.kind]


@dataclass(frozen=True)
class ModelSettings:
    backbone: str = "efficientnet_lite0"
    weights: str = ""
    checkpoint: str = ""
    input_size: int = 224
    batch_size: int = 64
    device: str = "auto"
    # Share of the embedding given to the checkpoint's taxonomy classifier, in [0, 1]; negative = the checkpoint's.
    taxonomy_weight: float = -1.0
    # What runs the forward pass: "auto" (ONNX Runtime on the CPU when installed, torch on CUDA), "torch",
    # "onnxruntime", "onnxruntime-int8". The vectors are the same, so switching never forces a re-index.
    runtime: str = "auto"
    # ONNX Runtime intra-op threads; 0 = all cores.
    threads: int = 0
    # Folder of the exported ONNX graphs, one per model fingerprint.
    onnx_dir: str = "var/onnx"
    # Query-side model for photos (docs/web.md): a folder of street encoders, one per served model fingerprint
    # (`manage.py train-street-encoder`), or one .pt file; "" = query photos go through the served model itself.
    street_encoder: str = ""


@dataclass(frozen=True)
class IndexSettings:
    dir: str = "var/index"
    spec: str = "auto"
    nprobe: int = 32
    ef_search: int = 128
    search_device: str = "auto"
    store: str = "faiss"


@dataclass(frozen=True)
class MilvusSettings:
    uri: str = "var/milvus.db"
    token: str = ""
    collection: str = "lookalike"
    index_params: str = ""
    batch_size: int = 1000


@dataclass(frozen=True)
class PipelineSettings:
    decode_workers: int = 1
    prefetch_batches: int = 4
    commit_every: int = 512


@dataclass(frozen=True)
class WebSettings:
    host: str = "127.0.0.1"
    port: int = 5000
    max_upload_mb: int = 16
    max_image_pixels: int = 40_000_000
    decode_min_side: int = 512
    default_k: int = 24
    max_k: int = 200
    max_results: int = 1000
    image_roots: tuple[str, ...] = ()
    thumb_size: int = 256
    thumb_cache_dir: str = "var/thumbs"
    cache_max_age_s: int = 86400
    localize: str = "auto"
    detector: str = "builtin"
    detector_checkpoint: str = "models/detector"
    detector_threshold: float = 0.3
    torch_threads: int = 0
    analytics_token: str = ""
    # Abuse limits (web/limits.py); commented defaults in config.toml [web].
    rate_limit_per_minute: int = 120
    rate_limit_loopback: bool = False
    max_concurrent_embeddings: int = 2
    embedding_queue_s: float = 5.0
    request_timeout_s: int = 60


DEFAULT_OUTFIT_SLOTS = (
    "topwear: sub_category=Topwear; article_type!=Dupatta|Suspenders",
    "bottomwear: sub_category=Bottomwear; article_type!=Stockings|Tights|Swimwear",
    "one_piece: sub_category=Dress|Saree|Apparel Set; article_type!=Swimwear",
    "footwear: master_category=Footwear",
    "bag: sub_category=Bags; article_type!=Tablet Sleeve|Wallets|Travel Accessory|Mobile Pouch",
    "accessory: sub_category=Watches|Eyewear|Belts|Jewellery|Headwear|Ties|Scarves|Stoles|Mufflers",
)
DEFAULT_OUTFIT_TEMPLATES = ("topwear+bottomwear+footwear+bag+accessory", "one_piece+footwear+bag+accessory")
DEFAULT_POLYVORE_CATEGORIES = (
    "tops=topwear", "outerwear=topwear", "bottoms=bottomwear", "all-body=one_piece", "shoes=footwear", "bags=bag",
    "jewellery=accessory", "accessories=accessory", "sunglasses=accessory", "hats=accessory", "scarves=accessory",
)


@dataclass(frozen=True)
class OutfitSettings:
    slots: tuple[str, ...] = DEFAULT_OUTFIT_SLOTS
    templates: tuple[str, ...] = DEFAULT_OUTFIT_TEMPLATES
    checkpoint: str = "models/outfits"
    cache_dir: str = "var/outfits"
    per_slot: int = 4
    match_gender: bool = True
    candidates: int = 60
    mmr_lambda: float = 0.7
    context_weight: float = 0.5
    polyvore_categories: tuple[str, ...] = DEFAULT_POLYVORE_CATEGORIES


@dataclass(frozen=True)
class TextSettings:
    """[text]: search by words (docs/text-search.md)."""

    checkpoint: str = "models/text"
    cache_dir: str = "var/text"
    runtime: str = "auto"
    rocchio_alpha: float = 1.0
    rocchio_beta: float = 0.75
    rocchio_gamma: float = 0.5
    negative_text_weight: float = 0.5
    modifier_weight: float = 0.2
    look_alike: float = 0.9
    colour_head: str = "models/colour"
    colour_weight: float = 0.8
    article_type_boost: float = 4.0
    label_weight_with_photo: float = 0.5


@dataclass(frozen=True)
class CurationSettings:
    """[curation]: duplicates, variants and the label audit (docs/curation.md)."""

    duplicate_threshold: float = 0.98
    duplicate_candidates: int = 10
    duplicate_min_cosine: float = 0.97
    variant_threshold: float = 0.93
    audit_neighbours: int = 20
    audit_max_current: float = 0.2
    outfit_distrust_confidence: float = 0.9
    cache_dir: str = "var/curation"


@dataclass(frozen=True)
class Settings:
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    catalog: CatalogSettings = field(default_factory=CatalogSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    index: IndexSettings = field(default_factory=IndexSettings)
    milvus: MilvusSettings = field(default_factory=MilvusSettings)
    pipeline: PipelineSettings = field(default_factory=PipelineSettings)
    web: WebSettings = field(default_factory=WebSettings)
    outfit: OutfitSettings = field(default_factory=OutfitSettings)
    text: TextSettings = field(default_factory=TextSettings)
    curation: CurationSettings = field(default_factory=CurationSettings)
    # Folder relative paths are resolved against (the config file's folder).
    base_dir: str = "."
    source: str = "<defaults>"

    def resolve_path(self, value: str) -> Path:
        """Resolve a configured path against the config file's folder."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else (Path(self.base_dir) / p).resolve()

    @property
    def database_url(self) -> str:
        """The database URL with a relative SQLite path resolved against the config folder."""
        url = self.database.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            return prefix + str(self.resolve_path(url[len(prefix):]))
        return url

    @property
    def index_dir(self) -> Path:
        return self.resolve_path(self.index.dir)

    @property
    def milvus_uri(self) -> str:
        """milvus.uri with a local milvus-lite file resolved against the config folder (URLs are kept)."""
        uri = self.milvus.uri
        return uri if "://" in uri else str(self.resolve_path(uri))

    @property
    def default_catalog(self) -> DefaultCatalog:
        """catalog.default_csv if it exists, else the full catalog in ../shared, else the one fetch-data wrote, else
        the demo catalog committed in the repository (kind "missing" only when none of them exists)."""
        configured = self.resolve_path(self.catalog.default_csv)
        if configured.is_file():
            return DefaultCatalog(configured, "configured")
        for path, kind in ((SHARED_CATALOG_CSV, "shared"), (self.fetched_catalog_dir / "catalog.csv", "fetched"),
                           (DEMO_CATALOG_CSV, "demo")):
            if path.is_file():
                return DefaultCatalog(path, kind)
        return DefaultCatalog(configured, "missing")

    @property
    def fetched_catalog_dir(self) -> Path:
        """Where `manage.py fetch-data fashion-product-images` writes by default (data/ beside config.toml)."""
        return self.resolve_path(FETCHED_CATALOG_DIR)

    @property
    def default_csv(self) -> Path:
        """The CSV `index` imports when given no catalog (see default_catalog)."""
        return self.default_catalog.path

    @property
    def image_roots(self) -> tuple[Path, ...]:
        """Configured folders result images may be served from: web.image_roots, else the default catalog's image
        root. The web app adds the roots of every catalog indexed into the store (Store.catalog_roots)."""
        if self.web.image_roots:
            return tuple(self.resolve_path(r) for r in self.web.image_roots)
        if self.catalog.images_root:
            return (self.resolve_path(self.catalog.images_root),)
        return (self.default_csv.parent,)


_SECTIONS = {f.name: f.type for f in dataclasses.fields(Settings) if f.name not in ("base_dir", "source")}


def _coerce(section: str, key: str, value: object, annotation: str) -> object:
    """Convert a TOML or environment value to the field's declared type."""
    where = f"[{section}] {key}"
    if annotation == "int":
        if isinstance(value, bool):
            raise SettingsError(f"{where}: expected an integer, got {value!r}")
        try:
            return int(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise SettingsError(f"{where}: expected an integer, got {value!r}") from None
    if annotation == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "1", "yes", "on"):
            return True
        if text in ("false", "0", "no", "off"):
            return False
        raise SettingsError(f"{where}: expected true or false, got {value!r}")
    if annotation == "float":
        if isinstance(value, bool):
            raise SettingsError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise SettingsError(f"{where}: expected a number, got {value!r}") from None
    if annotation == "str":
        if not isinstance(value, str):
            raise SettingsError(f"{where}: expected a string, got {value!r}")
        return value
    if annotation.startswith("tuple"):
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    value = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise SettingsError(f"{where}: not a JSON list: {exc}") from None
            else:
                value = [v.strip() for v in text.split(",") if v.strip()]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise SettingsError(f"{where}: expected a list of strings, got {value!r}")
        return tuple(value)
    raise SettingsError(f"{where}: unsupported type {annotation}")  # pragma: no cover


def _build_section(name: str, cls: type, values: Mapping[str, object]) -> object:
    hints = {f.name: str(f.type) for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(hints))
    if unknown:
        raise SettingsError(f"[{name}]: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(hints))}")
    kwargs = {k: _coerce(name, k, v, hints[k]) for k, v in values.items()}
    return cls(**kwargs)


def load_settings(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read config.toml and apply environment overrides.

    Args:
        path: the TOML file; None means defaults only (paths then resolve against the cwd).
        env: environment mapping to read LOOKALIKE_<SECTION>__<KEY> overrides from (os.environ if None).

    Returns:
        Frozen Settings.

    Raises:
        SettingsError: unreadable file, unknown section or key, or a value of the wrong type.
    """
    env = os.environ if env is None else env
    data: dict[str, dict[str, object]] = {}
    base_dir = Path.cwd()
    source = "<defaults>"
    if path is not None:
        p = Path(path)
        try:
            with p.open("rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise SettingsError(f"config file not found: {p}") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"config file {p} is not valid TOML: {exc}") from None
        base_dir = p.resolve().parent
        source = str(p.resolve())
    unknown = sorted(set(data) - set(_SECTIONS))
    if unknown:
        raise SettingsError(f"unknown config section(s): {', '.join(unknown)}")
    merged: dict[str, dict[str, object]] = {name: dict(data.get(name, {})) for name in _SECTIONS}
    for var, value in env.items():
        if not var.startswith(ENV_PREFIX) or "__" not in var[len(ENV_PREFIX):]:
            continue
        section, key = var[len(ENV_PREFIX):].lower().split("__", 1)
        if section not in merged:
            raise SettingsError(f"{var}: unknown config section {section!r}")
        merged[section][key] = value
    hints = typing.get_type_hints(Settings)
    sections = {name: _build_section(name, hints[name], merged[name]) for name in _SECTIONS}
    return Settings(**sections, base_dir=str(base_dir), source=source)  # type: ignore[arg-type]


def settings_as_dict(settings: Settings) -> dict[str, object]:
    """Plain-dict view of settings, for manifests and `manage.py config`."""
    return dataclasses.asdict(settings)
