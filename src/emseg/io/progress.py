"""tqdm progress for Dask computations."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def dask_progress(description: str, enabled: bool = True) -> Iterator[None]:
    """Show a tqdm bar over the tasks of every Dask computation run inside the block."""
    if not enabled:
        yield
        return
    from dask.callbacks import Callback
    from tqdm.auto import tqdm

    class TqdmCallback(Callback):
        def _start_state(self, dsk, state):
            self.bar = tqdm(total=sum(len(state[k]) for k in ("ready", "waiting", "running")) or None,
                            desc=description, unit="task", leave=False)

        def _posttask(self, key, result, dsk, state, worker_id):
            self.bar.update(1)

        def _finish(self, dsk, state, errored):
            self.bar.close()

    with TqdmCallback():
        yield
