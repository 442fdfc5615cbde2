"""Milvus as the vector store (index.store = "milvus"): one collection per build, kept in step with SQL.

Layout in Milvus:
    <collection>            an alias: what searches go to
    <collection>_g000007    the collection it names. Fields: id (= SQL primary key), vector, revision (SQL's
                            embedding revision), meta_hash, title + the taxonomy columns (lower-cased) and
                            attributes (JSON, lower-cased) for filters; the property "lookalike.manifest" holds
                            model fingerprint, dimension, metric, spec and index parameters.
A sync (publish) compares SQL with the collection by id, revision and metadata hash, then upserts what
changed and deletes what SQL no longer holds. A new model, new index parameters or `index --rebuild` fill a
new collection from SQL and move the alias to it in one step (the FAISS generation swap, Milvus-style); the
previous collection is kept until the next rebuild so servers still reading it finish cleanly. Every sync that
changes something is recorded in SQL's index_generations as milvus-NNNNNN: that name is what is "served".

milvus-lite serves a local file URI (*.db) inside this process; an http(s) URI is Milvus standalone/cluster.
pymilvus is imported lazily, so the base install works without it. Searching (and recovering a search from a
released collection or a lost connection) is in milvus_search.py.

Several processes: a process opening the store loads the served collection (it starts out released in any process
but the one that filled it). A milvus-lite file is held by one process at a time (its LOCK); another process is
refused with the fix (the milvus-lite server, or a Milvus server), and may open it once the first has exited.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from indexer.extras import require_module
from indexer.store.catalog_store import Store
from indexer.store.tables import TAXONOMY_COLUMNS
from indexer.vectors.base import CheckReport, VectorStoreError
from indexer.vectors.faiss_index import SearchParams
from indexer.vectors.generations import GenerationError
from indexer.vectors.milvus_schema import index_label, meta_hash, milvus_index, milvus_row
from indexer.vectors.milvus_search import MilvusManifest, MilvusSearcher, MilvusServed, error_message, muted_here

log = logging.getLogger(__name__)
# milvus-lite answers without an MVCC timestamp; pymilvus then warns on every full scan and uses its own clock,
# which is what a single-process store needs. Real Milvus sends the timestamp, so nothing is hidden there.
logging.getLogger("pymilvus.client.iterator.query_iterator").setLevel(logging.ERROR)


class _DropUnimplemented(logging.Filter):
    """milvus-lite's in-process gRPC server does not implement AllocTimestamp, which pymilvus asks for while it waits
    for an index build (and then does without); grpc logs a traceback for it on every `index`. Drop just that."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Method not implemented" not in record.getMessage()


logging.getLogger("grpc._server").addFilter(_DropUnimplemented())

RECORD_PREFIX = "milvus-"
MANIFEST_PROPERTY = "lookalike.manifest"
FORMAT_VERSION = 1
KEEP_COLLECTIONS = 2
TEXT_MAX_BYTES = 8192
TAXONOMY_MAX_BYTES = 512
_FIX = "run `python manage.py index --rebuild`"


@dataclass
class SyncDiff:
    """How a Milvus collection differs from SQL (ids sorted)."""

    missing: list[int]  # in SQL, not in the collection
    extra: list[int]  # in the collection, not active in SQL
    stale_vectors: list[int]  # older revision than SQL's
    stale_metadata: list[int]  # same revision, other filter fields (title/taxonomy/attributes changed in SQL)
    duplicates: list[int]  # ids held more than once
    entities: int  # entities in the collection
    unique: int  # distinct ids in the collection

    @property
    def upserts(self) -> list[int]:
        """Ids to (re)write from SQL; an upsert also collapses duplicates of an id."""
        extra = set(self.extra)
        return sorted(set(self.missing) | set(self.stale_vectors) | set(self.stale_metadata)
                      | {i for i in self.duplicates if i not in extra})

    @property
    def in_step(self) -> bool:
        return not (self.missing or self.extra or self.stale_vectors or self.stale_metadata or self.duplicates)


def release_local_server(uri: str) -> None:
    """Stop this process's milvus-lite server for a local file URI (releasing its lock for other processes)."""
    if "://" not in uri:
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(uri)


# Loggers that print a traceback for every failed call, muted while a failure is expected and retried.
_RETRY_LOGGERS = ("pymilvus.decorators", "milvus_lite.adapter.grpc.servicer")


@contextlib.contextmanager
def _quiet(*names: str):
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


# ---- the store ------------------------------------------------------------------------------------------------

class MilvusVectorStore:
    """SQL's vectors in a Milvus collection (milvus-lite for a *.db file URI, else a Milvus server)."""

    kind = "milvus"

    def __init__(self, uri: str, collection: str = "lookalike", token: str = "", spec: str = "auto",
                 index_params: str = "", params: SearchParams | None = None, batch_size: int = 1000) -> None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,200}", collection):
            raise ValueError(f"milvus.collection must be letters, digits and underscores (not starting with a "
                             f"digit), got {collection!r}")
        self.uri = uri
        self.alias = collection
        self.token = token
        self.index = milvus_index(spec, index_params)
        self.spec = index_label(self.index)
        self.params = params or SearchParams()
        self.batch_size = max(1, int(batch_size))
        self._client = None
        self._connect_lock = threading.Lock()  # one connect (and one recovery) at a time in a threaded server

    # ---- connection ----

    @property
    def local(self) -> bool:
        return "://" not in self.uri

    @property
    def client(self):
        if self._client is None:
            with self._connect_lock:
                if self._client is None:
                    self._client = self._connect()
        return self._client

    def _connect(self):
        pymilvus = require_module("pymilvus", 'index.store = "milvus"')
        if self.local:
            require_module("milvus_lite", f"milvus.uri = {self.uri!r} (a local milvus-lite file)")
            if not self.uri.endswith(".db"):
                raise VectorStoreError(f"milvus.uri {self.uri!r}: a local milvus-lite path must end in .db "
                                       "(or use http://host:19530 for a Milvus server)")
            Path(self.uri).parent.mkdir(parents=True, exist_ok=True)
            self._refuse_if_locked()
        try:
            return pymilvus.MilvusClient(uri=self.uri, token=self.token)
        except Exception as exc:
            raise VectorStoreError(f"cannot connect to Milvus at {self.uri}: {error_message(exc)}") from None

    def _refuse_if_locked(self) -> None:
        """milvus-lite holds an exclusive lock on its folder; say so plainly when another process has it."""
        from milvus_lite.server_manager import server_manager_instance

        if os.path.abspath(self.uri) in getattr(server_manager_instance, "_servers", {}):
            return  # this process already serves it
        lock = Path(self.uri) / "LOCK"
        if not lock.exists():
            return
        with lock.open("a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fh, fcntl.LOCK_UN)
            except BlockingIOError:
                raise VectorStoreError(
                    f"the milvus-lite database {self.uri} is open in another process (a server or an index job). "
                    f"To share it, run `milvus-lite server --data-dir {self.uri} --port 19530` and set milvus.uri "
                    "to http://127.0.0.1:19530") from None

    def close(self) -> None:
        """Close this client. A local milvus-lite server keeps running (other clients in this process may use it)
        until the process exits or release_local_server() is called."""
        if self._client is not None:
            client, self._client = self._client, None
            client.close()

    def ensure_loaded(self, collection: str, client=None) -> None:  # noqa: ANN001
        """Load a collection unless it is loaded. Every process that searches needs this: a collection filled by
        another process (an `index` run), or found again after a restart, starts out released.

        Raises:
            VectorStoreError: Milvus cannot be reached, the collection does not exist, or it does not load.
        """
        client = client or self.client
        state = self._call("get_load_state", client.get_load_state, collection).get("state")
        if getattr(state, "name", str(state)) == "Loaded":
            return
        log.info("loading Milvus collection %s (it was %s)", collection, getattr(state, "name", state))
        for attempt in range(3):  # milvus-lite may still be writing a segment file (see _reload_lite)
            try:
                with muted_here() if attempt < 2 else contextlib.nullcontext():
                    self._call("load_collection", client.load_collection, collection)
                return
            except VectorStoreError:
                if attempt == 2:
                    raise
                time.sleep(0.25 * (attempt + 1))

    def recover(self, collection: str, failed_client, reconnect: bool):  # noqa: ANN001, ANN201
        """After a search failed on failed_client: re-make the connection (reconnect=True; unless another thread
        already did) and load the collection. Returns the client to retry with.

        Raises:
            VectorStoreError: what is wrong, when Milvus still cannot serve the collection.
        """
        with self._connect_lock:
            if reconnect and self._client is failed_client:
                self._client = None
                with contextlib.suppress(Exception), muted_here():
                    failed_client.close()
                self._client = self._connect()
            client = self._client or failed_client
        self.ensure_loaded(collection, client)
        return client

    def _call(self, what: str, fn, *args, **kwargs):  # noqa: ANN001
        try:
            return fn(*args, **kwargs)
        except (VectorStoreError, GenerationError):
            raise
        except Exception as exc:
            raise VectorStoreError(f"Milvus {what} failed ({self.uri}): {error_message(exc)}") from None

    # ---- collections ----

    def served_collection(self) -> tuple[str | None, dict[str, Any]]:
        """(the collection the alias names, its manifest), or (None, {}) when the alias does not exist."""
        aliases = self._call("list_aliases", self.client.list_aliases).get("aliases", [])
        if self.alias not in aliases:
            return None, {}
        info = self._call("describe_collection", self.client.describe_collection, self.alias)
        return info["collection_name"], _manifest_of(info)

    def _collections(self) -> list[str]:
        pattern = re.compile(rf"{re.escape(self.alias)}_g(\d{{6}})")
        return sorted(c for c in self._call("list_collections", self.client.list_collections) if pattern.fullmatch(c))

    def _create(self, name: str, fingerprint: str, dim: int) -> None:
        from pymilvus import DataType, MilvusClient

        manifest = {"format": FORMAT_VERSION, "fingerprint": fingerprint, "dim": int(dim), "metric": "inner_product",
                    "spec": self.spec, "index": self.index, "created_at": time.time()}
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=int(dim))
        schema.add_field("revision", DataType.INT64)
        schema.add_field("meta_hash", DataType.INT64)
        schema.add_field("title", DataType.VARCHAR, max_length=TEXT_MAX_BYTES)
        for c in TAXONOMY_COLUMNS:
            schema.add_field(c, DataType.VARCHAR, max_length=TAXONOMY_MAX_BYTES)
        schema.add_field("attributes", DataType.JSON)
        index = self.client.prepare_index_params()
        # pymilvus 3 sends build parameters as flat key/values, which Milvus reads; milvus-lite 3.2 reads only the
        # older JSON "params" entry (and silently builds with defaults otherwise). Milvus accepts both, so send both.
        params = dict(self.index["params"])
        index.add_index(field_name="vector", index_type=self.index["index_type"], metric_type="IP",
                        params={**params, "params": params} if params else {})
        self._call("create_collection", self.client.create_collection, name, schema=schema, index_params=index,
                   description=json.dumps(manifest), properties={MANIFEST_PROPERTY: json.dumps(manifest)})
        # Inverted indexes make taxonomy filters cheap on big collections; Milvus builds them in the background
        # (filters work, unindexed, meanwhile), so do not wait for them.
        scalar = self.client.prepare_index_params()
        for c in TAXONOMY_COLUMNS:
            scalar.add_index(field_name=c, index_type="INVERTED")
        self._call("create_index", self.client.create_index, name, scalar, sync=False)

    def _write(self, collection: str, store: Store, fingerprint: str, ids: list[int] | None, hook) -> int:  # noqa: ANN001
        """Upsert SQL's rows (all, or these ids) into a collection in batches; returns the rows written."""
        written = 0
        for rows in store.iter_index_rows(fingerprint, ids=ids, with_vectors=True, batch=self.batch_size):
            self._call("upsert", self.client.upsert, collection, [milvus_row(r) for r in rows])
            written += len(rows)
            if written == len(rows):
                hook("during-index-save")
        return written

    def _delete(self, collection: str, ids: list[int]) -> None:
        for start in range(0, len(ids), self.batch_size):
            chunk = ids[start:start + self.batch_size]
            self._call("delete", self.client.delete, collection, ids=chunk)

    def scan(self, collection: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids, revisions, meta hashes) of every entity in a collection, read with strong consistency."""
        it = self._call("query_iterator", self.client.query_iterator, collection, batch_size=max(self.batch_size, 1000),
                        filter="id > 0", output_fields=["id", "revision", "meta_hash"], consistency_level="Strong")
        ids: list[int] = []
        revs: list[int] = []
        hashes: list[int] = []
        try:
            while True:
                batch = self._call("query_iterator.next", it.next)
                if not batch:
                    break
                for e in batch:
                    ids.append(int(e["id"]))
                    revs.append(int(e["revision"]))
                    hashes.append(int(e["meta_hash"]))
        finally:
            it.close()
        return np.asarray(ids, np.int64), np.asarray(revs, np.int64), np.asarray(hashes, np.int64)

    def _sql_rows(self, store: Store, fingerprint: str) -> dict[int, tuple[int, int]]:
        out: dict[int, tuple[int, int]] = {}
        for rows in store.iter_index_rows(fingerprint, batch=max(self.batch_size, 2000)):
            for r in rows:
                out[int(r["id"])] = (int(r["revision"]), meta_hash(r))
        return out

    def diff(self, collection: str, store: Store, fingerprint: str) -> SyncDiff:
        """How a collection differs from SQL's active rows of this model (by id, revision and metadata hash)."""
        sql = self._sql_rows(store, fingerprint)
        ids, revs, hashes = self.scan(collection)
        seen: dict[int, tuple[int, int]] = {}
        duplicates: set[int] = set()
        for i, r, h in zip(ids.tolist(), revs.tolist(), hashes.tolist(), strict=True):
            if i in seen:
                duplicates.add(i)
            seen[i] = (r, h)
        return SyncDiff(
            missing=sorted(i for i in sql if i not in seen),
            extra=sorted(i for i in seen if i not in sql),
            stale_vectors=sorted(i for i, (r, _) in seen.items() if i in sql and sql[i][0] != r),
            stale_metadata=sorted(i for i, (r, h) in seen.items() if i in sql and sql[i] != (r, h) and sql[i][0] == r),
            duplicates=sorted(duplicates), entities=len(ids), unique=len(seen))

    # ---- the VectorStore interface ----

    def current_name(self, store: Store) -> str | None:
        rec = store.latest_generation(RECORD_PREFIX)
        return rec["name"] if rec else None

    def publish(self, store: Store, embedder, report, force: bool = False,  # noqa: ANN001
                settings_snapshot: dict[str, Any] | None = None, hook=None) -> bool:
        """Make the collection hold exactly SQL's active vectors of this model (upserts + deletes), or fill a new
        collection and move the alias when the model or index parameters changed, or force is set."""
        hook = hook or (lambda _p: None)
        fp, dim = embedder.fingerprint, int(embedder.dim)
        t0 = time.perf_counter()
        collection, manifest = self.served_collection()
        fits = (collection is not None and manifest.get("fingerprint") == fp and manifest.get("dim") == dim
                and manifest.get("index") == self.index)
        state = store.state(fp)
        if fits and not force:
            d = self.diff(collection, store, fp)
            last = store.latest_generation(RECORD_PREFIX)
            if d.in_step and last is not None and last["fingerprint"] == fp:
                report.generation, report.generation_count, report.spec = last["name"], len(state.ids), self.spec
                return False
            log.info("syncing Milvus collection %s: %d to upsert, %d to delete", collection, len(d.upserts),
                     len(d.extra))
            hook("before-index-save")
            self._write(collection, store, fp, d.upserts, hook)
            self._delete(collection, d.extra)
            hook("before-swap")
        else:
            numbers = [int(c.rsplit("_g", 1)[1]) for c in self._collections()]
            collection = f"{self.alias}_g{max(numbers, default=0) + 1:06d}"
            log.info("filling Milvus collection %s from SQL (%d vectors)", collection, len(state.ids))
            self._create(collection, fp, dim)
            hook("before-index-save")
            self._write(collection, store, fp, None, hook)
            self._call("flush", self.client.flush, collection)
            if self.local:
                self._reload_lite(collection)
            hook("before-swap")
            self._point_alias(collection)
            hook("after-swap")
            self._drop_old(collection)
        name = _next_record_name(store)
        store.record_generation(_Record(name=name, spec=self.spec, fingerprint=fp, dim=dim, count=len(state.ids),
                                        high_water=int(state.revisions.max()) if len(state.revisions) else 0,
                                        build_seconds=round(time.perf_counter() - t0, 3)))
        report.generation, report.generation_count, report.spec, report.published = (
            name, len(state.ids), self.spec, True)
        return True

    def _reload_lite(self, collection: str, attempts: int = 20) -> None:
        """milvus-lite builds segment indexes in a background thread after a flush and searches exactly until
        then; reloading builds them now, so a filled collection is served with its index. The background thread
        may still be writing a segment file, which makes a load fail: try again shortly."""
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                with _quiet(*(() if last else _RETRY_LOGGERS)):
                    self._call("release_collection", self.client.release_collection, collection)
                    self._call("load_collection", self.client.load_collection, collection)
                return
            except VectorStoreError:
                if last:
                    raise
                time.sleep(0.25 * (attempt + 1))

    def _point_alias(self, collection: str) -> None:
        aliases = self._call("list_aliases", self.client.list_aliases).get("aliases", [])
        if self.alias in aliases:
            self._call("alter_alias", self.client.alter_alias, collection, self.alias)
        else:
            self._call("create_alias", self.client.create_alias, collection, self.alias)

    def _drop_old(self, current: str) -> None:
        """Drop collections of this alias but the current one and the one before it."""
        names = self._collections()
        keep = {current, *[n for n in names if n < current][-(KEEP_COLLECTIONS - 1):]}
        for name in names:
            if name not in keep:
                self._call("drop_collection", self.client.drop_collection, name)

    def open(self, name: str | None, store: Store, embedder) -> tuple[MilvusServed, MilvusSearcher]:  # noqa: ANN001
        """The served collection (the alias's), loaded, and a searcher over it, after checking model and dimension.

        Raises:
            GenerationError: nothing published yet, the alias is missing, or it holds another model's vectors.
            VectorStoreError: Milvus cannot be reached (or the milvus-lite file is held by another process), or the
                collection does not load.
        """
        rec = store.latest_generation(RECORD_PREFIX)
        if name is None or rec is None:
            raise GenerationError(f"nothing has been indexed into Milvus collection {self.alias} yet: "
                                  "run `python manage.py index`")
        collection, manifest = self.served_collection()
        if collection is None:
            raise GenerationError(f"Milvus at {self.uri} has no collection {self.alias}: {_FIX}")
        if manifest.get("fingerprint") != embedder.fingerprint:
            raise GenerationError(f"Milvus collection {collection} holds vectors of model "
                                  f"{manifest.get('fingerprint')} but the configured model is {embedder.fingerprint}: "
                                  f"{_FIX}")
        if manifest.get("dim") != embedder.dim:
            raise GenerationError(f"Milvus collection {collection} has dimension {manifest.get('dim')}, the model "
                                  f"gives {embedder.dim}: {_FIX}")
        self.ensure_loaded(collection)
        served = MilvusServed(MilvusManifest(name=rec["name"], spec=manifest.get("spec", self.spec),
                                             fingerprint=embedder.fingerprint, dim=int(embedder.dim),
                                             count=int(rec["count"]), collection=collection), store)
        index = manifest.get("index") or self.index
        return served, MilvusSearcher(self, collection, int(embedder.dim), int(rec["count"]), index, self.params)

    def check(self, store: Store, fingerprint: str) -> CheckReport:
        """Compare SQL (active items embedded by this model, their revisions and filter fields) with the collection."""
        state = store.state(fingerprint)
        report = CheckReport(ok=True, generation=self.current_name(store), fingerprint=fingerprint,
                             sql_count=len(state.ids), not_embedded=state.not_embedded)
        if state.not_embedded:
            report.problems.append(f"{state.not_embedded} active items have no embedding from the current model: "
                                   "run `python manage.py index`")
        try:
            collection, manifest = self.served_collection()
        except VectorStoreError as exc:
            report.ok = False
            report.problems.append(str(exc))
            return report
        if collection is None:
            report.ok = False
            report.problems.append(f"Milvus at {self.uri} has no collection {self.alias}: run `python manage.py index`")
            return report
        if manifest.get("fingerprint") != fingerprint:
            report.problems.append(f"Milvus collection {collection} was built by model {manifest.get('fingerprint')}, "
                                   f"the configured model is {fingerprint}: {_FIX}")
        d = self.diff(collection, store, fingerprint)
        report.index_count = d.unique
        report.missing_from_index = d.missing
        report.extra_in_index = d.extra
        report.stale_vectors = bool(d.stale_vectors)
        report.stale_metadata = len(d.stale_metadata)
        if d.duplicates:
            report.problems.append(f"the index holds duplicate ids ({len(d.duplicates)})")
        if report.missing_from_index:
            report.problems.append(f"{len(report.missing_from_index)} items in SQL are not in the index")
        if report.extra_in_index:
            report.problems.append(f"{len(report.extra_in_index)} ids in the index are not active items in SQL")
        if report.stale_vectors:
            report.problems.append(f"the index holds vectors older than SQL's ({len(d.stale_vectors)} items)")
        if d.stale_metadata:
            report.problems.append(f"{len(d.stale_metadata)} items' filter fields in Milvus differ from SQL: "
                                   "run `python manage.py index`")
        report.ok = not report.problems
        return report


@dataclass
class _Record:
    """What Store.record_generation stores about one Milvus sync."""

    name: str
    spec: str
    fingerprint: str
    dim: int
    count: int
    high_water: int
    build_seconds: float


def _next_record_name(store: Store) -> str:
    last = store.latest_generation(RECORD_PREFIX)
    n = int(last["name"][len(RECORD_PREFIX):]) if last and last["name"][len(RECORD_PREFIX):].isdigit() else 0
    return f"{RECORD_PREFIX}{n + 1:06d}"


def _manifest_of(info: dict[str, Any]) -> dict[str, Any]:
    text = (info.get("properties") or {}).get(MANIFEST_PROPERTY) or info.get("description") or ""
    try:
        value = json.loads(text)
    except (TypeError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}
