"""The pure mapping between Lookalike and Milvus: index specs -> Milvus index and search parameters, filters ->
Milvus boolean expressions, SQL item rows -> Milvus rows (clipped to Milvus's field limits) and their metadata hash.
No pymilvus import; milvus_store.py does the talking.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import numpy as np

from indexer.store.tables import TAXONOMY_COLUMNS
from indexer.vectors.faiss_index import SearchParams

TEXT_MAX_BYTES = 8192
TAXONOMY_MAX_BYTES = 512
AUTO_HNSW = {"index_type": "HNSW", "params": {"M": 32, "efConstruction": 200}}


def milvus_index(spec: str, index_params: str = "") -> dict[str, Any]:
    """Milvus vector-index parameters from index.spec (a FAISS factory string) or milvus.index_params (JSON).

    Flat -> FLAT; IVF<n>,Flat -> IVF_FLAT nlist=n; IVF<n>,SQ8 -> IVF_SQ8; IVF<n>,PQ<m> -> IVF_PQ m, nbits 8;
    HNSW<M> (or HNSW<M>,Flat) -> HNSW M, efConstruction 200; HNSW<M>,SQ8 -> HNSW_SQ; auto -> HNSW M=32.
    Milvus builds its index per segment, so unlike FAISS "auto" does not depend on the catalog size.

    Raises:
        ValueError: a spec with no Milvus equivalent, or index_params that are not a JSON object with index_type.
    """
    if index_params.strip():
        try:
            value = json.loads(index_params)
        except json.JSONDecodeError as exc:
            raise ValueError(f"milvus.index_params is not valid JSON: {exc}") from None
        if not isinstance(value, dict) or not isinstance(value.get("index_type"), str):
            raise ValueError('milvus.index_params must be a JSON object like {"index_type": "HNSW", "params": {}}')
        return {"index_type": value["index_type"].upper(), "params": dict(value.get("params") or {})}
    text = spec.strip().replace(" ", "")
    if text.lower() == "auto":
        return json.loads(json.dumps(AUTO_HNSW))
    if text.lower() == "flat":
        return {"index_type": "FLAT", "params": {}}
    m = re.fullmatch(r"IVF(\d+),(Flat|SQ8|PQ(\d+)(?:x8)?)", text, re.I)
    if m:
        nlist = int(m.group(1))
        if m.group(2).lower() == "flat":
            return {"index_type": "IVF_FLAT", "params": {"nlist": nlist}}
        if m.group(2).lower() == "sq8":
            return {"index_type": "IVF_SQ8", "params": {"nlist": nlist}}
        return {"index_type": "IVF_PQ", "params": {"nlist": nlist, "m": int(m.group(3)), "nbits": 8}}
    m = re.fullmatch(r"HNSW(\d+)(,Flat|,SQ8)?", text, re.I)
    if m:
        params = {"M": int(m.group(1)), "efConstruction": 200}
        if (m.group(2) or "").lower() == ",sq8":
            return {"index_type": "HNSW_SQ", "params": {**params, "sq_type": "SQ8"}}
        return {"index_type": "HNSW", "params": params}
    raise ValueError(f"index.spec {spec!r} has no Milvus equivalent: use Flat, IVF<n>,Flat, IVF<n>,SQ8, IVF<n>,PQ<m>, "
                     "HNSW<M>, HNSW<M>,SQ8 or auto, or give milvus.index_params")


def index_label(index: dict[str, Any]) -> str:
    """A short spec-like label of Milvus index parameters, e.g. "HNSW(M=32,efConstruction=200)"."""
    params = ",".join(f"{k}={v}" for k, v in sorted(index.get("params", {}).items()))
    return f"{index['index_type']}({params})" if params else index["index_type"]


def search_params(index: dict[str, Any], params: SearchParams, k: int) -> dict[str, Any]:
    """Milvus search parameters for an index: nprobe for IVF (at most nlist), ef for HNSW (at least k)."""
    kind = index["index_type"]
    if kind.startswith("IVF"):
        nlist = int(index["params"].get("nlist", params.nprobe))
        return {"metric_type": "IP", "params": {"nprobe": max(1, min(params.nprobe, nlist))}}
    if kind.startswith("HNSW"):
        return {"metric_type": "IP", "params": {"ef": max(params.ef_search, k)}}
    return {"metric_type": "IP", "params": {}}


def _literal(value: str) -> str:
    # A JSON string is a valid Milvus string literal: double quotes, backslash escapes.
    return json.dumps(value, ensure_ascii=False)


def filter_expression(filters: dict[str, tuple[str, list[str]]]) -> str:
    """A Milvus boolean expression for validated filters (Store.validate_filters): values of one key are OR-ed,
    keys AND-ed; matching is on lower-cased values, as SQL's filter_ids does."""
    parts = []
    for key, (kind, values) in filters.items():
        if kind == "column":
            parts.append(f"{key} in [{', '.join(_literal(v) for v in values)}]")
        else:  # JSON path equality works in milvus-lite and Milvus alike (`json["k"] in [...]` does not)
            path = f"attributes[{_literal(key)}]"
            parts.append("(" + " or ".join(f"{path} == {_literal(v)}" for v in values) + ")")
    return " and ".join(parts)


def _clip(text: str | None, limit: int) -> str:
    data = (text or "").lower().encode()
    return data[:limit].decode(errors="ignore")


def milvus_row(row: dict[str, Any]) -> dict[str, Any]:
    """The Milvus entity of an SQL row from Store.iter_index_rows (vector included when the row has one)."""
    attributes = {str(k): (v.lower() if isinstance(v, str) else v) for k, v in (row.get("attributes") or {}).items()}
    out: dict[str, Any] = {"id": int(row["id"]), "revision": int(row["revision"]), "meta_hash": meta_hash(row),
                           "title": _clip(row.get("title"), TEXT_MAX_BYTES), "attributes": attributes}
    for c in TAXONOMY_COLUMNS:
        out[c] = _clip(row.get(c), TAXONOMY_MAX_BYTES)
    if "vector" in row:
        out["vector"] = np.asarray(row["vector"], np.float32).tolist()
    return out


def meta_hash(row: dict[str, Any]) -> int:
    """Signed 64-bit hash of an item's filterable metadata (title, taxonomy, attributes), case-folded."""
    attrs = {str(k): (v.lower() if isinstance(v, str) else v) for k, v in (row.get("attributes") or {}).items()}
    body = json.dumps([(row.get("title") or "").lower(), [(row.get(c) or "").lower() for c in TAXONOMY_COLUMNS],
                       attrs], sort_keys=True, ensure_ascii=False, default=str)
    return int.from_bytes(hashlib.blake2b(body.encode(), digest_size=8).digest(), "big", signed=True)


# ---- served objects ---------------------------------------------------------------------------------------------
