"""Running a block plan: an overlapped pipeline in one process, batches of it on Dask.

A *job* is any picklable object with three methods::

    job.read(block) -> np.ndarray          # the block's input (I/O, runs in reader threads)
    job.compute(list[np.ndarray]) -> list  # one batched forward pass (main thread)
    job.write(block, result) -> None       # store the block's output (writer threads)

In one process, reading the next batches, computing the current one and writing the
previous ones overlap (reader/writer thread pools with a bounded prefetch queue). On a
``distributed`` cluster each task runs that same pipeline over a group of blocks on a
worker; the job keeps per-process caches (model on the worker's device, open arrays).
A block is marked in the ledger only after ``job.write`` returned; failed blocks are
retried ``retries`` times, then reported — never marked.
"""

from __future__ import annotations

import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from emseg.blocks.ledger import Ledger
from emseg.blocks.plan import Block


@dataclass
class RunReport:
    """What a run did: blocks finished now, skipped (already done), failed (key → error)."""

    done: list[str] = field(default_factory=list)
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def run_pipeline(job, blocks: Sequence[Block], ledger: Ledger | None, batch_size: int = 1,
                 io_threads: int = 2, prefetch_batches: int = 2,
                 on_block: Callable[[Block], None] | None = None) -> tuple[list[str], dict[str, str]]:
    """One pass over ``blocks`` with overlapped read / compute / write; returns (done, failed)."""
    done: list[str] = []
    failed: dict[str, str] = {}
    batches = [list(blocks[i:i + batch_size]) for i in range(0, len(blocks), max(1, batch_size))]
    with ThreadPoolExecutor(io_threads, thread_name_prefix="emseg-read") as readers, \
            ThreadPoolExecutor(io_threads, thread_name_prefix="emseg-write") as writers:
        pending: deque[list[tuple[Block, Future]]] = deque()
        writes: deque[tuple[Block, Future]] = deque()

        def submit_reads(batch):
            pending.append([(b, readers.submit(job.read, b)) for b in batch])

        def finish_writes(block_until_below: int):
            while writes and (writes[0][1].done() or len(writes) > block_until_below):
                block, fut = writes.popleft()
                try:
                    fut.result()
                    if ledger is not None:
                        ledger.mark(block.key)
                    done.append(block.key)
                    if on_block:
                        on_block(block)
                except Exception as exc:  # noqa: BLE001 - reported, never marked done
                    failed[block.key] = _error(exc)

        queue = iter(batches)
        for _ in range(prefetch_batches):
            batch = next(queue, None)
            if batch:
                submit_reads(batch)
        while pending:
            reads = pending.popleft()
            nxt = next(queue, None)
            if nxt:
                submit_reads(nxt)
            ok_blocks, inputs = [], []
            for block, fut in reads:
                try:
                    inputs.append(fut.result())
                    ok_blocks.append(block)
                except Exception as exc:  # noqa: BLE001
                    failed[block.key] = _error(exc)
            if ok_blocks:
                try:
                    results = job.compute(inputs)
                except Exception as exc:  # noqa: BLE001
                    for block in ok_blocks:
                        failed[block.key] = _error(exc)
                    results = []
                for block, result in zip(ok_blocks, results):
                    writes.append((block, writers.submit(job.write, block, result)))
            finish_writes(block_until_below=2 * io_threads * max(1, batch_size))
        finish_writes(block_until_below=0)
    return done, failed


def _worker_run(job, blocks, ledger_root, batch_size, io_threads):
    ledger = Ledger(ledger_root) if ledger_root is not None else None
    try:
        return run_pipeline(job, blocks, ledger, batch_size, io_threads)
    except Exception:  # noqa: BLE001 - a broken task fails its blocks, not the run
        err = traceback.format_exc(limit=3)
        return [], {b.key: err for b in blocks}


def run_blocks(job, blocks: Sequence[Block], ledger: Ledger | None, *, batch_size: int = 1,
               retries: int = 1, io_threads: int = 2, client=None, blocks_per_task: int | None = None,
               progress: Callable[[Block | None, int], None] | None = None) -> RunReport:
    """Run every block not yet in the ledger, in process or on a ``distributed`` client.

    ``progress(block, n)`` is called as blocks finish (``n`` = blocks newly finished).
    """
    start = time.perf_counter()
    report = RunReport()
    finished = ledger.done() if ledger is not None else set()
    todo = [b for b in blocks if b.key not in finished]
    report.skipped = len(blocks) - len(todo)
    for _attempt in range(retries + 1):
        if not todo:
            break
        if client is None:
            done, failed = run_pipeline(job, todo, ledger, batch_size, io_threads,
                                        on_block=(lambda b: progress(b, 1)) if progress else None)
        else:
            done, failed = _run_distributed(client, job, todo, ledger, batch_size, io_threads,
                                            blocks_per_task, progress)
        report.done.extend(done)
        report.failed = failed
        todo = [b for b in todo if b.key in failed]
    report.seconds = time.perf_counter() - start
    return report


def _run_distributed(client, job, blocks, ledger, batch_size, io_threads, blocks_per_task, progress):
    from distributed import as_completed

    n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    per_task = blocks_per_task or max(batch_size, min(16, -(-len(blocks) // (4 * n_workers))))
    groups = [list(blocks[i:i + per_task]) for i in range(0, len(blocks), per_task)]
    [job_future] = client.scatter([job], broadcast=True)
    root = str(ledger.root.parent) if ledger is not None else None
    futures = [client.submit(_worker_run, job_future, g, root, batch_size, io_threads, pure=False)
               for g in groups]
    done: list[str] = []
    failed: dict[str, str] = {}
    for fut in as_completed(futures):
        try:
            d, f = fut.result()
        except Exception as exc:  # noqa: BLE001 - worker died etc.
            group = groups[futures.index(fut)]
            d, f = [], {b.key: _error(exc) for b in group}
        done.extend(d)
        failed.update(f)
        if progress:
            progress(None, len(d))
    return done, failed
