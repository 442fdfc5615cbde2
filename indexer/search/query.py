"""One shopper query end to end (after decoding): crop or localise, embed, search, merge.

The web API and bench/latency.py call the same ``QueryEngine.search``, so the in-process time a bench
measures is exactly the work a request does besides HTTP.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from engine.localize import (
    WHOLE,
    Detector,
    FeatureProbe,
    Region,
    activation_map,
    box_from_map,
    box_iou,
    drop_near_duplicates,
    find_feature_layer,
    grid_regions,
    letterbox_content,
    looks_like_product_shot,
    merge_best_evidence,
    pad_box,
    shopper_focus,
)
from engine.models.colour_head import ColourHead
from indexer.catalog.images import crop_box
from indexer.curation.collapse import FETCH_FACTOR, GroupCache, collapse_ranked
from indexer.search.composed import CompositionWeights, TextModel, UnknownItemsError, compose_vector, drop_look_alikes
from indexer.search.label_terms import NO_TERMS, ColourFeatures, LabelTerms, label_scores
from indexer.search.service import Hit, SearchService
from indexer.vectors.generations import LoadedGeneration

LOCALIZE_MODES = ("auto", "crops", "off")
# Detector boxes searched at most, best first.
MAX_DETECTIONS = 5
# Images in the warm-up's large batch (see QueryEngine.warm_up).
WARM_UP_BATCH = 16
# The default answer of a photo with garments (``garment_answer``): its first HEAD_N results come from the default
# garment, where the whole photo may step in only when it matches at least WHOLE_MARGIN (cosine) better; the rest
# merges every garment and the whole photo by best evidence. Chosen on val products (SYNTHETIC easy + hard street
# sets, 100 queries each; the whole photo alone wins on near-product-shot photos, the garment on cluttered ones).
HEAD_N = 5
WHOLE_MARGIN = 0.05


@dataclass(frozen=True)
class QueryOptions:
    """What a shopper asked for. ``crop`` is relative (x0, y0, x1, y1); it replaces localisation."""

    k: int
    offset: int = 0
    filters: Mapping[str, Sequence[str]] | None = None
    threshold: float | None = None
    crop: tuple[float, float, float, float] | None = None
    localize: str = "auto"
    # "none", "duplicates" or "variants": one result per group of the latest `manage.py duplicates` run, carrying
    # the rest of its group ("+N more"; indexer/curation/collapse.py).
    collapse: str = "none"
    # Words and relevance feedback (indexer/search/composed.py): with or without a photo.
    text: str = ""
    negative_text: str = ""
    positive_ids: tuple[int, ...] = ()
    negative_ids: tuple[int, ...] = ()

    @property
    def composed(self) -> bool:
        """True when the query has words or thumbs up / down items (QueryEngine.search_composed answers it)."""
        return bool(self.text or self.negative_text or self.positive_ids or self.negative_ids)


@dataclass
class RegionReport:
    """A searched region, with its best score and how many of the returned hits it explains best."""

    region: Region
    best_score: float | None = None
    hits: int = 0

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"box": list(self.region.box), "source": self.region.source,
                               "best_score": None if self.best_score is None else round(self.best_score, 6),
                               "hits": self.hits}
        if self.region.label:
            out["label"] = self.region.label
        if self.region.confidence is not None:
            out["confidence"] = round(float(self.region.confidence), 6)
        return out


@dataclass
class GarmentResult:
    """A detected garment (``regions[region]``) and its own first results; ``focus`` is its shopper_focus score."""

    region: int
    hits: list[Hit]
    focus: float


@dataclass
class QueryResult:
    hits: list[Hit]
    region_of_hit: list[int]
    regions: list[RegionReport]
    localized: bool
    has_more: bool
    timings_ms: dict[str, float] = field(default_factory=dict)
    # With garments detected (localize=auto and a detector): each garment's results, and which one ``hits`` answers.
    garments: list[GarmentResult] = field(default_factory=list)
    default_garment: int | None = None
    # The photo looked like a product shot, so the served model embedded it (else the query embedder did).
    product_shot: bool = False
    # Catalog labels the words named, per kind ("article_type", "colour"; "not X" from the negative words).
    named_labels: dict[str, list[str]] = field(default_factory=dict)


def searched_box(region: Region) -> tuple[float, float, float, float]:
    """The part of the photo a region's embedding saw (relative x0, y0, x1, y1): a detector box grown by pad_box,
    any other region's own box."""
    return pad_box(region.box) if region.source == "detector" else region.box  # type: ignore[return-value]


def region_crop(image: Image.Image, region: Region) -> Image.Image:
    """The picture a region's embedding was computed from (the photo itself for the whole frame)."""
    return image if region.box == WHOLE else crop_box(image, searched_box(region))


def garment_answer(per_region: Sequence[Sequence[Hit]], garment: int, whole: int = 0, head_n: int = HEAD_N,
                   margin: float = WHOLE_MARGIN) -> list[tuple[int, float, int]]:
    """(id, score, region index) of the default answer of a photo with detected garments.

    The first ``head_n``: the default garment's results, where a whole-photo hit takes a place only when its score
    beats the garment's by ``margin`` (so a cluttered photo's whole view rarely outranks the garment, while a photo
    that is nearly a product shot keeps its whole-photo match). After them: every region (garments + whole photo,
    no grid crop) merged by best evidence, so recall@20 does not hang on the default garment alone.
    """
    ranked = {h.id: (h.score, h.score, garment) for h in per_region[garment]}
    for h in per_region[whole]:
        if h.id not in ranked or h.score - margin > ranked[h.id][0]:
            ranked[h.id] = (h.score - margin, h.score, whole)
    head = [(i, v[1], v[2]) for i, v in sorted(ranked.items(), key=lambda kv: (-kv[1][0], kv[0]))][:head_n]
    seen = {e[0] for e in head}
    rest = merge_best_evidence([[(h.id, h.score) for h in hits] for hits in per_region])
    return head + [e for e in rest if e[0] not in seen]


class QueryEngine:
    """Searches a photo with optional street-photo localisation over a SearchService.

    Thread-safe: forward passes run one at a time on a dedicated model thread (the Embedder runs one batch at a
    time); decoding, cropping, preprocessing, vector search and SQL hydration run in the callers' threads.
    """

    def __init__(self, service: SearchService, detector: Detector | None = None, default_mode: str = "auto",
                 text_model: TextModel | None = None, weights: CompositionWeights | None = None,
                 query_embedder=None) -> None:  # noqa: ANN001 - engine Embedder
        if default_mode not in LOCALIZE_MODES:
            raise ValueError(f"web.localize must be one of {', '.join(LOCALIZE_MODES)}, got {default_mode!r}")
        self.service = service
        # What street photos and their regions go through: the street encoder when one is configured
        # (indexer.embedders.query_embedder_from_settings), else the served model; both give vectors of the index.
        # Photos that look like product shots go through the served model, which made the catalog's vectors.
        self.query_embedder = query_embedder or service.embedder
        self.text_model = text_model
        self.weights = weights or CompositionWeights()
        self.detector = detector
        self.default_mode = default_mode
        # Every forward pass runs on this one thread: one batch at a time (the Embedder's contract), and the
        # model's per-thread state (allocator arenas, oneDNN scratchpads, caches) stays warm whichever server
        # thread took the request. Measured: street-photo embedding ~25% slower when hopping between 8 threads.
        self._model_thread = ThreadPoolExecutor(1, thread_name_prefix="lookalike-model")
        self._probe: FeatureProbe | None | bool = False  # False: not looked for yet
        self._direction: tuple[str, np.ndarray | None] | None = None
        self._groups: GroupCache | None = None
        self._colour_features = ColourFeatures()

    def warm_up(self) -> None:
        """Find the feature layer and run the batch shapes a query uses once, so the first request is not slow.

        One larger batch first: after glibc's malloc has freed a block that size it raises its mmap and trim
        thresholds and keeps the activation memory of query-sized batches, instead of unmapping and
        page-faulting it on every forward pass (measured: localised street-photo queries ~25% slower without).
        """
        blank = Image.new("RGB", (64, 64), (127, 127, 127))
        probe = self._feature_probe()
        self._embed([blank] * WARM_UP_BATCH)
        self._embed([blank] * (1 + len(grid_regions())), probe)
        self._embed([blank])
        if self.query_embedder is not self.service.embedder:
            self._embed([blank], product_shot=True)  # product shots go through the served model
        self.detect(blank)  # the detector's first forward pass (session arenas) too
        if self.text_model is not None and self.text_model.available(self.service.embedder.fingerprint) is None:
            head = self.text_model.label_reader(self.service.embedder, self.weights).colour_head
            if head is not None:  # the served generation's colour features (seconds at 42k items)
                self.colour_features(self.service.served()[0], head)

    # ---- pieces --------------------------------------------------------------------------------------

    def _feature_probe(self) -> FeatureProbe | None:
        """The probe on the street model's feature layer (the activation crop is only asked of street photos)."""
        if self._probe is False:
            emb = self.query_embedder
            # Its dummy forward pass runs on the model thread too: never two passes through the module at once.
            layer = self._model_thread.submit(find_feature_layer, emb.module, emb.input_size, emb.device).result()
            self._probe = FeatureProbe(emb.module, layer) if layer else None
        return self._probe  # type: ignore[return-value]

    def _catalog_direction(self, channels: int) -> np.ndarray | None:
        """Mean catalog embedding, when embeddings live in the feature map's channel space (no head)."""
        gen, _ = self.service.served()
        name = gen.manifest.name
        if self._direction is None or self._direction[0] != name:
            direction = None
            if len(gen.vectors) and gen.vectors.shape[1] == channels:
                mean = gen.vectors.mean(axis=0)
                norm = float(np.linalg.norm(mean))
                direction = (mean / norm).astype(np.float32) if norm > 0 else None
            self._direction = (name, direction)
        return self._direction[1]

    def _embed(self, images: Sequence[Image.Image], probe: FeatureProbe | None = None, product_shot: bool = False
               ) -> tuple[np.ndarray, np.ndarray | None]:
        """(embeddings, the first image's feature map if probed); the feature map is read on the model thread,
        before another query's forward pass can overwrite the probe. A product shot goes through the served model,
        anything else through the query embedder (the street encoder when configured)."""
        emb = self.service.embedder if product_shot else self.query_embedder
        batch = emb.preprocess_batch(list(images))  # PIL work runs in the caller's thread, in parallel

        def forward() -> tuple[np.ndarray, np.ndarray | None]:
            if probe is None:
                return emb.embed_tensors(batch), None
            with probe.capture():
                vectors = emb.embed_tensors(batch)
            features = probe.features(0)  # torch ran: the hook saw the layer
            return vectors, features if features is not None else emb.feature_map(0)  # ONNX Runtime ran

        return self._model_thread.submit(forward).result()

    def on_model_thread(self, fn, *args):  # noqa: ANN001, ANN201 - any callable and its result
        """Run ``fn(*args)`` on the model thread, serialised with the searches' forward passes (explanations)."""
        return self._model_thread.submit(fn, *args).result()

    def _collapse(self, ranked: list, key, mode: str) -> tuple[list, dict[int, list[int]]]:  # noqa: ANN001
        """(ranked entries, one per duplicate / variant group, {kept id: ids of the rest of its group})."""
        if mode == "none":
            return ranked, {}
        if self._groups is None:
            self._groups = GroupCache(self.service.store)
        collapsed = collapse_ranked(ranked, key, self._groups.groups(mode))
        return [entry for entry, _ in collapsed], {int(key(entry)): more for entry, more in collapsed if more}

    def embedder_for(self, result: QueryResult):  # noqa: ANN201 - engine Embedder
        """The embedder that embedded a result's photo: the served model for a product shot, else the query
        embedder."""
        return self.service.embedder if result.product_shot else self.query_embedder

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Embed photos, serialised with the searches' forward passes (the outfit service embeds through this)."""
        return self._embed(images)[0]

    def detect(self, image: Image.Image) -> list[Region]:
        """The detector's garments (at most MAX_DETECTIONS, best first) as regions; [] without a detector. Runs on
        the model thread: the built-in detector shares the served model's trunk."""
        if self.detector is None:
            return []
        found = self._model_thread.submit(self.detector.detect, image).result()
        return [Region(tuple(float(v) for v in d.box), "detector", d.label, float(d.score))  # type: ignore[arg-type]
                for d in found[:MAX_DETECTIONS]]

    def regions_for(self, image: Image.Image, options: QueryOptions, product_shot: bool | None = None
                    ) -> tuple[list[Region], bool]:
        """The regions a query searches (before the activation crop), and whether it localises.

        A client's crop box wins; ``off`` and product shots (in ``auto``) search the whole photo; ``auto`` with a
        detector that finds garments searches the whole photo + the garments and no grid crop (a background cell
        cannot outrank a garment); otherwise, and always in ``crops``, the whole photo + grid crops (+ detector
        boxes in ``crops``). ``product_shot``: ``looks_like_product_shot(image)`` when the caller has it already.
        """
        if options.crop is not None:
            return [Region(tuple(options.crop), "user")], False  # type: ignore[arg-type]
        mode = options.localize or self.default_mode
        if product_shot is None:
            product_shot = looks_like_product_shot(image)
        if mode == "off" or (mode == "auto" and product_shot):
            return [Region(WHOLE, "whole")], False
        garments = self.detect(image)
        if mode == "auto" and garments:
            return [Region(WHOLE, "whole"), *garments], True
        return drop_near_duplicates([Region(WHOLE, "whole"), *grid_regions(), *garments]), True

    # ---- the query -----------------------------------------------------------------------------------

    def search(self, image: Image.Image, options: QueryOptions) -> QueryResult:
        """Top hits for a decoded RGB photo.

        Raises:
            ImageDecodeError: a crop box that is invalid or smaller than a pixel.
            FilterError: an unknown filter column.
            GenerationError: no index can be served.
        """
        t0 = time.perf_counter()
        product_shot = options.crop is None and looks_like_product_shot(image)
        regions, localized = self.regions_for(image, options, product_shot)
        t_detect = time.perf_counter()
        garment_mode = (options.crop is None and (options.localize or self.default_mode) == "auto"
                        and any(r.source == "detector" for r in regions))
        crops = [region_crop(image, r) for r in regions]
        probe = self._feature_probe() if localized and not garment_mode else None
        vectors, features = self._embed(crops, probe, product_shot)
        if localized and probe is not None:
            if features is not None:
                amap = activation_map(features, self._catalog_direction(features.shape[0]))
                box = box_from_map(amap, letterbox_content(*image.size))
                extra = Region(box, "activation") if box else None
                if extra and all(box_iou(extra.box, r.box) < 0.8 for r in regions):
                    regions.append(extra)
                    vectors = np.concatenate([vectors, self._embed([crop_box(image, extra.box)])[0]])
        t1 = time.perf_counter()
        fetch = (options.offset + options.k + 1) * (FETCH_FACTOR if options.collapse != "none" else 1)
        per_region = self.service.search_vectors(vectors, fetch, options.filters, options.threshold)
        t2 = time.perf_counter()
        by_id = {h.id: h for hits in per_region for h in hits}
        garments: list[GarmentResult] = []
        chosen: int | None = None
        if garment_mode:
            # Each garment answers on its own; the default answer starts with the garment the shopper most likely
            # means (garment_answer). No grid crop was searched, so no background cell can outrank a garment.
            for i, r in enumerate(regions):
                if r.source == "detector":
                    ranked, more_g = self._collapse([(h.id, h.score, i) for h in per_region[i]], lambda e: e[0],
                                                    options.collapse)
                    own_hits = {h.id: h for h in per_region[i]}
                    hits_g = [Hit(e[0], e[1], {**own_hits[e[0]].item, "more_ids": more_g.get(e[0], [])}
                                  if options.collapse != "none" else own_hits[e[0]].item) for e in ranked[:options.k]]
                    best = per_region[i][0].score if per_region[i] else 0.0
                    garments.append(GarmentResult(i, hits_g, shopper_focus(r.box, best)))
            chosen = max(range(len(garments)), key=lambda g: garments[g].focus)
            merged = garment_answer(per_region, garments[chosen].region)
        else:
            merged = merge_best_evidence([[(h.id, h.score) for h in hits] for hits in per_region])
        merged, more = self._collapse(merged, lambda e: e[0], options.collapse)
        page = merged[options.offset:options.offset + options.k]
        reports = [RegionReport(r, hits[0].score if hits else None) for r, hits in zip(regions, per_region,
                                                                                       strict=True)]
        hits_out: list[Hit] = []
        region_of_hit: list[int] = []
        for item_id, score, region_index in page:
            hit = by_id[item_id]
            hits_out.append(Hit(hit.id, score, {**hit.item, "more_ids": more.get(item_id, [])}
                                if options.collapse != "none" else hit.item))
            region_of_hit.append(region_index)
            reports[region_index].hits += 1
        timings = {"detect": (t_detect - t0) * 1000, "embed": (t1 - t_detect) * 1000, "search": (t2 - t1) * 1000,
                   "total": (time.perf_counter() - t0) * 1000}
        return QueryResult(hits_out, region_of_hit, reports, localized, len(merged) > options.offset + options.k,
                           {k: round(v, 2) for k, v in timings.items()}, garments, chosen, product_shot)

    def text_vectors(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors of texts in the served image space.

        Raises:
            TextTowerError: no text model for the served image model (the message says `manage.py train-text`).
        """
        if self.text_model is None:
            from engine.models.text_tower import TextTowerError

            raise TextTowerError("text search is not configured: run `python manage.py train-text`")
        return self.text_model.encoder(self.service.embedder.fingerprint).encode(list(texts))

    def label_terms(self, text: str, negative_text: str = "", photo: bool = False
                    ) -> tuple[LabelTerms, ColourHead | None]:
        """The catalog labels the words name, as scoring terms (indexer/search/label_terms.py; ``photo``: the words
        modify a photo), and the colour head that scores a named colour (None: no colour named, or no colour head)."""
        reader = self.text_model.label_reader(self.service.embedder, self.weights) if self.text_model else None
        if reader is None:
            return NO_TERMS, None
        terms = reader.terms(text, negative_text, photo)
        return terms, reader.colour_head if terms.colour_weights is not None else None

    def colour_features(self, gen: LoadedGeneration, head: ColourHead) -> np.ndarray:
        """The colour features (label_terms.colour_features) of a generation's items, computed once per served
        generation from their vectors (and their pictures' cached colour descriptors, for a head that reads them)."""
        def posteriors() -> np.ndarray:
            descriptors = None
            if head.colour_bins and self.text_model is not None:
                descriptors = self.text_model.item_colours(self.service.store, gen.ids, head.colour_bins)
            return head.posterior(gen.vectors, descriptors)

        return self._colour_features.of(gen.manifest.name, head, posteriors)

    def _item_vectors(self, ids: Sequence[int]) -> np.ndarray | None:
        if not ids:
            return None
        fingerprint = self.service.embedder.fingerprint
        found = {i: self.service.store.get_vector(int(i), fingerprint) for i in ids}
        missing = [i for i, v in found.items() if v is None]
        if missing:
            raise UnknownItemsError(missing)
        return np.stack([found[i] for i in ids]).astype(np.float32)

    def search_composed(self, image: Image.Image | None, options: QueryOptions) -> QueryResult:
        """Top hits for words, negative words and thumbs up / down items, with or without a photo (the photo's
        whole frame, or the client's crop). Filters, the threshold and ``collapse`` apply as in a photo search;
        thumbs-down items and their look-alikes (cosine >= text.look_alike) are left out.

        Raises:
            TextTowerError: words without a text model for the served image model.
            UnknownItemsError: example ids the index does not hold.
            EmptyQueryError: nothing positive to search for (only negative words / thumbs-down items).
            ImageDecodeError, FilterError, GenerationError: as ``search``.
        """
        t0 = time.perf_counter()
        texts = [t for t in (options.text, options.negative_text) if t]
        encoded = dict(zip(texts, self.text_vectors(texts), strict=True)) if texts else {}
        photo = None
        product_shot = image is not None and options.crop is None and looks_like_product_shot(image)
        if image is not None:
            crop = image if options.crop is None else crop_box(image, options.crop)
            photo = self._embed([crop], product_shot=product_shot)[0][0]
        positives = self._item_vectors(options.positive_ids)
        negatives = self._item_vectors(options.negative_ids)
        query = compose_vector(text=encoded.get(options.text), photo=photo,
                               negative_text=encoded.get(options.negative_text), positives=positives,
                               negatives=negatives, weights=self.weights)
        terms, colour_head = (self.label_terms(options.text, options.negative_text, photo is not None) if texts
                              else (NO_TERMS, None))
        query = terms.boost(query)
        t1 = time.perf_counter()
        want = options.offset + options.k + 1
        fetch = want if negatives is None else 2 * want + 20  # look-alikes of thumbs-down items drop out
        if options.collapse != "none":
            fetch *= FETCH_FACTOR
        while True:
            if colour_head is not None:
                # A named colour: every item's score gains its colour bonus, so the ranking is exact.
                hits = self.service.search_exact(
                    lambda gen: label_scores(gen.vectors, query, self.colour_features(gen, colour_head),
                                             terms.colour_weights), fetch,
                    options.filters, options.threshold, exclude_ids=options.negative_ids)
            else:
                hits = self.service.search_vectors(query[None, :], fetch, options.filters, options.threshold,
                                                   exclude_ids=options.negative_ids)[0]
            if negatives is not None and hits:
                keep = drop_look_alikes(self._item_vectors([h.id for h in hits]), negatives, self.weights.look_alike)
                kept = [h for h, ok in zip(hits, keep, strict=True) if ok]
            else:
                kept = hits
            # One result per duplicate / variant group, as a photo search (the rest of the group: "+N more").
            kept, more = self._collapse(kept, lambda h: h.id, options.collapse)
            if len(kept) >= want or len(hits) < fetch or fetch >= self.service.store.count_items():
                break
            fetch *= 2
        t2 = time.perf_counter()
        page = kept[options.offset:options.offset + options.k]
        if options.collapse != "none":
            page = [Hit(h.id, h.score, {**h.item, "more_ids": more.get(h.id, [])}) for h in page]
        region = Region(WHOLE if options.crop is None else tuple(options.crop), "whole" if options.crop is None
                        else "user")  # type: ignore[arg-type]
        report = RegionReport(region, kept[0].score if kept else None, len(page))
        timings = {"embed": (t1 - t0) * 1000, "search": (t2 - t1) * 1000, "total": (time.perf_counter() - t0) * 1000}
        return QueryResult(page, [0] * len(page), [report] if image is not None else [], False, len(kept) > want - 1,
                           {k: round(v, 2) for k, v in timings.items()}, product_shot=product_shot,
                           named_labels=terms.named)

    def similar_to_item(self, item_id: int, options: QueryOptions) -> tuple[list[Hit], bool] | None:
        """Items most like a catalog item (itself excluded), paged; None when the item is unknown."""
        fetch = (options.offset + options.k + 1) * (FETCH_FACTOR if options.collapse != "none" else 1)
        hits = self.service.similar_to_item(item_id, fetch, options.filters, options.threshold)
        if hits is None:
            return None
        if options.collapse != "none":
            hits, more = self._collapse(hits, lambda h: h.id, options.collapse)
            hits = [Hit(h.id, h.score, {**h.item, "more_ids": more.get(h.id, [])}) for h in hits]
        return hits[options.offset:options.offset + options.k], len(hits) > options.offset + options.k

