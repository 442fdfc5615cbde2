"""Label audit: catalog items whose taxonomy value disagrees with what the pictures say, ranked by confidence, with
the suggested value.

For each audited column an item gets a distribution over the column's values from its picture:
- article_type: the served checkpoint's taxonomy classifier posterior (read back from the stored vectors: their
  last C components are sqrt(w * p), engine/models/heads.py EmbeddingNet) mixed half and half with the votes of the
  item's nearest neighbours in appearance space;
- base_colour: the votes of its nearest neighbours by colour descriptor (engine/colour.py), since the appearance
  embedding carries colour only weakly;
- every other column (sub_category, master_category, gender, usage): its appearance neighbours' votes, mixed for
  sub_category and master_category with the predicted article_type mapped through the catalog's own
  type -> category table (so a T-shirt filed under "Belts" is caught even when few neighbours share its labels).
An item is a suspect when the distribution gives its current value at most ``max_current`` and another value more;
``confidence`` is the probability of the suggested value and the ranking key is its margin over the current value.
Pure numpy over arrays; nothing is changed here (records.apply_label applies a suggestion).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

AUDIT_COLUMNS = ("article_type", "sub_category", "master_category", "base_colour", "gender", "usage")
# Audited unless columns are named: the ones a picture can tell. Gender and usage come from titles and merchandising
# (a cricket jersey is "Sports", a backpack "Unisex" or "Men" by the maker's word), so neighbours' votes on them
# mostly flag honest labels; audit them with --column when wanted.
DEFAULT_COLUMNS = ("article_type", "sub_category", "master_category", "base_colour")
# Share of every distribution given to the column's catalog-wide value frequencies, so that no value is ever
# impossible and a rare value weighs less than a common one when neighbours all vote otherwise.
PRIOR_SHARE = 0.02
NEIGHBOURS = 20
CLASSIFIER_SHARE = 0.5


@dataclass(frozen=True)
class Suspect:
    """An item whose ``column`` value the pictures contradict."""

    item_id: int
    column: str
    current: str
    suggested: str
    confidence: float
    current_probability: float

    @property
    def margin(self) -> float:
        return self.confidence - self.current_probability

    @property
    def rank_key(self) -> tuple[float, float, int]:
        """Sort key, most suspect first: the least probable current value, then the surest suggestion. A value the
        pictures give almost no chance (a T-shirt filed as "Bath Robe") beats a plausible confusion (Tshirts vs
        Tops), which real catalogs are full of."""
        return (self.current_probability, -self.confidence, self.item_id)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.item_id, "column": self.column, "current": self.current, "suggested": self.suggested,
                "confidence": round(self.confidence, 4),
                "current_probability": float(f"{self.current_probability:.4g}")}


def classifier_posterior(vectors: np.ndarray, n_classes: int, weight: float) -> np.ndarray:
    """(N, n_classes) taxonomy posterior recovered from embeddings whose last ``n_classes`` components are
    sqrt(weight * p) (EmbeddingNet with a classifier; the stored vectors are unit-norm so nothing else scales them)."""
    if not 0.0 < weight <= 1.0:
        raise ValueError(f"the classifier weight must be in (0, 1], got {weight}")
    tail = np.asarray(vectors, np.float32)[:, -n_classes:]
    p = np.square(tail) / weight
    return p / np.maximum(p.sum(axis=1, keepdims=True), 1e-12)


def appearance_part(vectors: np.ndarray, n_classes: int) -> np.ndarray:
    """The embedding without the classifier's components, re-normalised (0 classes: the vectors as they are)."""
    x = np.asarray(vectors, np.float32)
    if n_classes:
        x = x[:, :-n_classes]
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def nearest_neighbours(features: np.ndarray, k: int = NEIGHBOURS) -> tuple[np.ndarray, np.ndarray]:
    """(similarities, rows) of each row's ``k`` nearest other rows by inner product (exact, faiss IndexFlatIP)."""
    import faiss

    x = np.ascontiguousarray(features, np.float32)
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    kk = min(k + 1, len(x))
    sims, rows = index.search(x, kk)
    # Drop each row itself (usually first; not always when exact duplicates tie).
    out_s = np.zeros((len(x), kk - 1), np.float32)
    out_r = np.full((len(x), kk - 1), -1, np.int64)
    for i in range(len(x)):
        keep = rows[i] != i
        s, r = sims[i][keep][:kk - 1], rows[i][keep][:kk - 1]
        out_s[i, :len(s)], out_r[i, :len(r)] = s, r
    return out_s, out_r


def vote_distribution(labels: Sequence[str | None], sims: np.ndarray, rows: np.ndarray,
                      values: Sequence[str]) -> np.ndarray:
    """(N, len(values)) neighbours' label votes, weighted by similarity (clipped at 0), normalised per row.
    Unlabelled neighbours do not vote; a row without any vote is uniform."""
    code = {v: k for k, v in enumerate(values)}
    lab = np.array([code.get(v, -1) if v else -1 for v in labels], np.int64)
    out = np.zeros((len(rows), len(values)), np.float32)
    neighbour_labels = np.where(rows >= 0, lab[np.clip(rows, 0, None)], -1)
    w = np.clip(sims, 0.0, None)
    for j in range(rows.shape[1]):
        ok = neighbour_labels[:, j] >= 0
        np.add.at(out, (np.nonzero(ok)[0], neighbour_labels[ok, j]), w[ok, j])
    total = out.sum(axis=1, keepdims=True)
    return np.where(total > 0, out / np.maximum(total, 1e-12), 1.0 / max(len(values), 1))


def centroid_distribution(features: np.ndarray, labels: Sequence[str | None], values: Sequence[str],
                          temperature: float = 0.05) -> np.ndarray:
    """(N, len(values)) softmax over the cosine of each row's features with every value's mean feature (a
    nearest-centroid classifier; smooth, so a far-off value gets a small but ordered probability)."""
    code = {v: k for k, v in enumerate(values)}
    x = np.asarray(features, np.float32)
    centroids = np.zeros((len(values), x.shape[1]), np.float32)
    for k, v in enumerate(labels):
        if v in code:
            centroids[code[v]] += x[k]
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    logits = (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)) @ centroids.T / temperature
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def mapping_table(from_labels: Sequence[str | None], to_labels: Sequence[str | None], from_values: Sequence[str],
                  to_values: Sequence[str]) -> np.ndarray:
    """(len(from_values), len(to_values)) P(to | from) from the catalog's own label pairs (uniform when unseen)."""
    fc = {v: k for k, v in enumerate(from_values)}
    tc = {v: k for k, v in enumerate(to_values)}
    m = np.zeros((len(from_values), len(to_values)), np.float32)
    for a, b in zip(from_labels, to_labels, strict=True):
        if a in fc and b in tc:
            m[fc[a], tc[b]] += 1
    total = m.sum(axis=1, keepdims=True)
    return np.where(total > 0, m / np.maximum(total, 1e-12), 1.0 / max(len(to_values), 1))


def rank_suspects(item_ids: Sequence[int], column: str, labels: Sequence[str | None], values: Sequence[str],
                  distribution: np.ndarray, max_current: float = 0.2) -> list[Suspect]:
    """Items whose current value gets at most ``max_current`` of ``distribution`` while another value gets more,
    most suspect first (``Suspect.rank_key``)."""
    code = {v: k for k, v in enumerate(values)}
    out = []
    best = distribution.argmax(axis=1)
    for i, (item_id, label) in enumerate(zip(item_ids, labels, strict=True)):
        if not label or label not in code:
            continue
        p_cur = float(distribution[i, code[label]])
        p_best = float(distribution[i, best[i]])
        if values[best[i]] != label and p_cur <= max_current and p_best > p_cur:
            out.append(Suspect(int(item_id), column, label, values[best[i]], p_best, p_cur))
    out.sort(key=lambda s: s.rank_key)
    return out


@dataclass
class AuditInputs:
    """What the audit reads, row-aligned: item ids, their taxonomy rows, the generation's vectors, the classifier's
    classes and weight (empty / 0 without one), and colour descriptors (None: base_colour is not audited)."""

    ids: Sequence[int]
    rows: Sequence[dict[str, Any]]
    vectors: np.ndarray
    classes: Sequence[str] = ()
    classifier_weight: float = 0.0
    colours: np.ndarray | None = None


def value_prior(labels: Sequence[str | None], values: Sequence[str]) -> np.ndarray:
    """(len(values),) catalog frequency of each value."""
    code = {v: k for k, v in enumerate(values)}
    counts = np.zeros(len(values), np.float32)
    for v in labels:
        if v in code:
            counts[code[v]] += 1
    return counts / max(float(counts.sum()), 1.0)


def audit_labels(inputs: AuditInputs, columns: Sequence[str] = DEFAULT_COLUMNS, neighbours: int = NEIGHBOURS,
                 max_current: float = 0.2) -> dict[str, list[Suspect]]:
    """Suspects per audited column, best first (see the module docstring for how each column is judged)."""
    unknown = [c for c in columns if c not in AUDIT_COLUMNS]
    if unknown:
        raise ValueError(f"cannot audit column(s) {', '.join(unknown)}; auditable: {', '.join(AUDIT_COLUMNS)}")
    n_classes = len(inputs.classes) if inputs.classifier_weight > 0 else 0
    appearance = appearance_part(inputs.vectors, n_classes)
    app_sims, app_rows = nearest_neighbours(appearance, neighbours)
    type_labels = [r.get("article_type") for r in inputs.rows]
    type_values = sorted({v for v in type_labels if v} | set(inputs.classes))
    type_dist = vote_distribution(type_labels, app_sims, app_rows, type_values)
    if n_classes:
        posterior = classifier_posterior(inputs.vectors, n_classes, inputs.classifier_weight)
        where = {v: k for k, v in enumerate(type_values)}
        mapped = np.zeros_like(type_dist)
        mapped[:, [where[c] for c in inputs.classes]] = posterior
        type_dist = CLASSIFIER_SHARE * mapped + (1 - CLASSIFIER_SHARE) * type_dist
    out: dict[str, list[Suspect]] = {}
    for column in columns:
        labels = [r.get(column) for r in inputs.rows]
        values = sorted({v for v in labels if v})
        if len(values) < 2:
            out[column] = []
            continue
        if column == "article_type":
            dist = type_dist
            values = type_values
        elif column == "base_colour":
            if inputs.colours is None:
                continue
            sims, rows = nearest_neighbours(inputs.colours, neighbours)
            dist = 0.5 * vote_distribution(labels, sims, rows, values) + 0.5 * centroid_distribution(
                inputs.colours, labels, values)
        else:
            dist = vote_distribution(labels, app_sims, app_rows, values)
            if column in ("sub_category", "master_category"):
                table = mapping_table(type_labels, labels, type_values, values)
                dist = 0.5 * dist + 0.5 * (type_dist @ table)
        dist = (1 - PRIOR_SHARE) * dist + PRIOR_SHARE * value_prior(labels, values)[None, :]
        out[column] = rank_suspects(inputs.ids, column, labels, values, dist, max_current)
    return out
