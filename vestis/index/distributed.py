"""Catalog -> index on a Ray cluster: decode and embed spread over workers, one writer.

``build_index(..., engine="ray", ray=RayOptions(...))`` (:func:`vestis.index.build.build_index`):
the same build, in every mode (``build``, ``add``, ``update``), with its steps
(:mod:`vestis.index.steps`) placed on Ray:

* Ray Data reads the catalog: the catalog is cut into parts (:meth:`CatalogReader.shards`: a
  parquet row group, some image files, some CSV rows) and each part is read, hashed and planned
  (:func:`~vestis.index.steps.plan_item`) by a Ray task, against the store's content hashes as
  they were when the build started;
* ``map_batches`` on a pool of actors, each holding one encoder (loaded once per actor, with the
  same model, precision and fingerprint as the store), decodes and embeds the items to embed
  (:func:`~vestis.index.steps.embed_plans`) and passes the others through;
* the driver writes the records to the store (an index folder or ``postgresql://``) in batches,
  one transaction each, in catalog order (a later row with an id seen before is a duplicate, as
  in the local build), and counts everything in the same :class:`BuildReport`.

Exactly-once in effect: an item already stored with the same content hash is skipped, so a
build that stopped half-way resumes where its last committed batch ended. A worker that dies
mid-job is restarted by Ray and its batch run again (``max_restarts``/``max_task_retries``); the
driver takes each catalog row once (by its part and position: a re-run batch's copy is dropped),
checks that every row came back, and upserts by id, so nothing is lost and nothing doubled.

On a laptop the build starts a small local Ray (a CPU per worker and one for Ray
Data's reading and re-blocking tasks, which wait for ever when the actors hold every CPU; a small
object store; no dashboard) and stops it afterwards; with ``address`` (``"auto"`` or
``"ray://head:10001"``) it joins a running cluster, whose nodes need vestis (same version)
installed and the catalog's files at the same paths. Within a process that already called
``ray.init()`` the build uses that Ray and leaves it running.

Ray is imported lazily (``import vestis`` never pulls it in) and started before the encoder is
loaded or the store created: some native libraries (usearch) abort the process when imported
before ``ray.init()``. ``tests/index/test_distributed.py`` runs the CLI in a subprocess, as a
user does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import socket
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vestis.errors import InputError, VestisError
from vestis.index.steps import BuildJob, Embedded, Plan, embed_plans, plan_item, tally
from vestis.index.store import StoreInfo, load_index_encoder
from vestis.progress import progress_bar

#: Object store of a local Ray started by the build: batches in flight, not the catalog.
LOCAL_OBJECT_STORE_BYTES = 256 * 1024**2
#: Ray restarts a dead worker this many times, and runs a batch whose worker died this many
#: times more, before the build fails (an item that kills every worker stops it, not loops it).
MAX_RESTARTS = 3


@dataclass(frozen=True)
class RayOptions:
    """Where and how a build with ``engine="ray"`` runs.

    ``address``: ``None`` starts a local Ray with ``workers + 1`` CPUs (or uses the one this process
    already started); ``"auto"`` or ``"ray://host:10001"`` joins a cluster. ``workers``: the actors
    that decode and embed, one encoder and one CPU each. ``worker_batch_size``: items per batch sent
    to an actor; ``shard_size``: rows or image files per reading task."""

    address: str | None = None
    workers: int = 2
    worker_batch_size: int = 32
    shard_size: int = 256

    def __post_init__(self) -> None:
        for name in ("workers", "worker_batch_size", "shard_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"Ray option {name} must be a whole number, at least 1, got {value!r}")


def embed_on_ray(ray, options: RayOptions, job: BuildJob, model: str) -> set[str]:
    """The Ray engine: the catalog read, planned, decoded and embedded by Ray (in :func:`ray_session`),
    the records written by this process one batch at a time; returns the ids seen (for ``prune``).
    ``model``: what the workers load (by name or path), checked against the store's fingerprint.
    The report counts the items each worker embedded."""
    rows = _pipeline(
        ray, job.reader.shards(options.shard_size), job.existing, mode=job.mode, title_col=job.title_col,
        worker=_EmbedWorkerArgs(model, job.store.info, job.weights, job.title_col),
        workers=options.workers, worker_batch_size=options.worker_batch_size, batch_size=job.batch_size,
    )  # fmt: skip
    return _write(job, rows)


# ------------------------------------------------------------------------------ Ray


@contextlib.contextmanager
def ray_session(options: RayOptions) -> Iterator[object]:
    """Ray, initialised: the one this process already runs, a cluster at ``address``, or a small
    local one (stopped on the way out). Progress bars and logs of Ray itself stay off: the build
    shows its own progress."""
    try:
        import ray
    except ImportError:
        raise VestisError("--engine ray needs Ray: pip install 'vestis[ray]'") from None
    address, workers = options.address, options.workers
    started = False
    if not ray.is_initialized():
        kw = dict(log_to_driver=False, logging_level=logging.WARNING)
        address = address or os.environ.get("RAY_ADDRESS")  # Ray's own way to name a cluster
        if address is None:  # "local": a new one, even where `ray start` left one running
            kw.update(num_cpus=workers + 1, object_store_memory=LOCAL_OBJECT_STORE_BYTES, include_dashboard=False)
        try:
            ray.init(address=address or "local", **kw)
        except Exception as exc:  # Ray raises a plain Exception when its local node does not start
            raise VestisError(f"cannot connect to Ray at {address or 'a new local cluster'}: {exc}") from None
        started = True
    cpus = int(ray.cluster_resources().get("CPU", 0))
    if workers >= cpus:
        if started:
            ray.shutdown()
        fewer = f": use --workers {cpus - 1} or fewer" if cpus > 1 else ""
        raise InputError(
            f"{workers} worker(s) need {workers + 1} CPUs on the Ray cluster (one each, and one for reading "
            f"the catalog); it has {cpus}{fewer}"
        )
    from ray.data import DataContext

    data_log = logging.getLogger("ray.data")
    ctx = DataContext.get_current()
    saved = (ctx.enable_progress_bars, ctx.print_on_execution_start, ctx.execution_options.preserve_order)
    level = data_log.level
    data_log.setLevel(logging.ERROR)  # its notes on progress bars and backpressure are not the user's
    ctx.enable_progress_bars = ctx.print_on_execution_start = False
    ctx.execution_options.preserve_order = True  # catalog order: the first row of an id wins, retries are seen
    try:
        yield ray
    finally:
        ctx.enable_progress_bars, ctx.print_on_execution_start, ctx.execution_options.preserve_order = saved
        data_log.setLevel(level)
        if started:
            ray.shutdown()


@dataclass(frozen=True)
class _EmbedWorkerArgs:
    """What an embedding actor needs: the store's model (by name or path) and how documents are made."""

    model: str
    info: StoreInfo
    weights: tuple[float, float]
    title_col: str | None


class EmbedWorker:
    """A Ray Data actor: one encoder, loaded once; embeds the batches' items planned ``embed``.

    The encoder is the store's model in its precision, and must have its fingerprint: vectors of
    another model (or weights) are refused before any is made. Each output row says which worker
    (``host:pid``) embedded it, for the report."""

    def __init__(self, args: _EmbedWorkerArgs) -> None:
        info = StoreInfo(args.model, args.info.fingerprint, args.info.dim, args.info.settings)
        self.encoder = load_index_encoder(info, threads=1)
        if self.encoder.fingerprint != args.info.fingerprint:
            raise VestisError(
                f"worker on {socket.gethostname()} loaded {args.model} with fingerprint {self.encoder.fingerprint}, "
                f"the index holds vectors of {args.info.fingerprint}: install the same model files on every node"
            )
        self.args = args
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        plans: list[Plan] = [pickle.loads(blob) for blob in batch["plan"]]
        todo = [p for p in plans if p.action == "embed"]
        done = iter(embed_plans(self.encoder, todo, self.args.weights, self.args.title_col) if todo else ())
        results = [next(done) if p.action == "embed" else p for p in plans]
        return {
            "shard": list(batch["shard"]),
            "pos": list(batch["pos"]),
            "result": [pickle.dumps(r) for r in results],
            "worker": [self.name if p.action == "embed" else "" for p in plans],
        }


def _plan_shard(row: dict, *, existing: list, mode: str, title_col: str | None) -> list[dict]:
    """A Ray task: read one catalog part and plan its rows against the store's content hashes.
    Items not to embed travel without their image."""
    import ray

    hashes = ray.get(existing[0])
    out = []
    for pos, item in enumerate(pickle.loads(row["part"]).read()):
        plan = plan_item(item, hashes, mode, title_col)
        if plan.action != "embed":
            plan.item.image = None
        out.append({"shard": row["shard"], "pos": pos, "plan": pickle.dumps(plan)})
    return out


def _pipeline(
    ray, shards, existing: dict[str, str], *, mode, title_col, worker, workers, worker_batch_size, batch_size
) -> Iterator[tuple[int, int, Plan | Embedded, str]]:
    """The Ray Data pipeline: ``(shard, position, result, worker)`` for every catalog row, in catalog order.

    Catalog parts and plans travel pickled: Arrow would infer a column type from each part's
    rows, and metadata columns vary from catalog to catalog."""
    parts = ray.data.from_items([{"shard": i, "part": pickle.dumps(s)} for i, s in enumerate(shards)])
    planned = parts.flat_map(
        _plan_shard, fn_kwargs={"existing": [ray.put(existing)], "mode": mode, "title_col": title_col}
    )
    # A part (a parquet row group: thousands of rows) in blocks of one actor batch each, streamed: the
    # actors share the work evenly, and a worker that dies takes one small batch with it, not a part.
    planned = planned.repartition(target_num_rows_per_block=worker_batch_size)
    with warnings.catch_warnings():
        # Ray 2.60 takes an actor's restart budget only as a (deprecated) remote argument, and
        # its own default is unbounded: an item that kills its worker would be retried for ever.
        warnings.simplefilter("ignore", DeprecationWarning)
        embedded = planned.map_batches(
            EmbedWorker,
            fn_constructor_args=(worker,),
            batch_size=worker_batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=1,
            max_restarts=MAX_RESTARTS,
            max_task_retries=MAX_RESTARTS,
        )
    for batch in embedded.iter_batches(batch_size=batch_size, batch_format="numpy"):
        for shard, pos, blob, name in zip(batch["shard"], batch["pos"], batch["result"], batch["worker"]):
            yield int(shard), int(pos), pickle.loads(blob), str(name)


def _write(job: BuildJob, rows) -> set[str]:
    """Take the pipeline's rows once each, in catalog order, and commit them ``job.batch_size`` at a
    time; returns the ids seen (for ``prune``). Every catalog row must come back, or the build
    fails (after committing what it has: a re-run resumes from there)."""
    report, total = job.report, job.reader.total
    seen: set[str] = set()
    taken: dict[int, bytearray] = {}  # per catalog part, a byte per row: 1 once the row is taken
    embedded: list[Embedded] = []
    restored: list[Plan] = []

    def commit() -> None:
        job.commit(restored, embedded)
        restored.clear()
        embedded.clear()

    with progress_bar(total, f"indexing {Path(job.source).name} on Ray", quiet=job.quiet) as advance:
        for shard, pos, result, worker in rows:
            flags = taken.setdefault(shard, bytearray())
            if pos < len(flags) and flags[pos]:  # a re-run batch's copy of a row already taken
                continue
            flags.extend(bytes(max(0, pos + 1 - len(flags))))
            flags[pos] = 1
            plan = result.plan if isinstance(result, Embedded) else result
            if tally(report, plan, seen):
                if plan.action == "metadata":
                    restored.append(plan)
                else:
                    embedded.append(result)
                    report.workers[worker] = report.workers.get(worker, 0) + 1
            advance(1)
            if len(embedded) + len(restored) >= job.batch_size:
                commit()
        commit()
    if report.seen != total:
        raise VestisError(f"Ray returned {report.seen:,} of the catalog's {total:,} rows; build again to resume")
    return seen
