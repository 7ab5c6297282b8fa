"""Block plans, the done-block ledger and execution on Dask."""
