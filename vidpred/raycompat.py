"""Every use vidpred makes of Ray's private internals, one function each, so that a Ray upgrade that moves
one breaks one place, and ``tests/test_raycompat.py`` says which, naming the Ray version. Each has no public
equivalent in the Ray vidpred pins (:data:`TESTED_WITH`); where one appears, it replaces the function here.
"""

from __future__ import annotations

from typing import Any

TESTED_WITH = "2.60.0"


def execution_index(data_context: Any) -> int:
    """How many times the dataset of ``data_context`` (a ``ray.data.DataContext``) has started executing
    before this one: 0 for the first epoch, 1 for the second... Ray Data counts executions in this private
    attribute and seeds its own per-epoch file shuffles from it (``FileShuffleConfig``); a datasource's
    ``get_read_tasks`` reads it the same way (Ray's ``FileBasedDatasource`` does)."""
    return data_context._execution_idx if data_context is not None else 0


def worker_output_dispatcher() -> Any:
    """The dispatcher through which a driver started with ``ray.init(log_to_driver=True)`` prints its Ray
    processes' output (its handlers take one batch of lines of one process each); there is no public way to
    redirect that output but ``log_to_driver=False``, which drops it instead of filing it."""
    from ray._private.ray_logging import global_worker_stdstream_dispatcher

    return global_worker_stdstream_dispatcher
