"""Every use vidpred makes of Ray's private internals, one function each, so that a Ray upgrade that moves
one breaks one place, and ``tests/test_raycompat.py`` says which, naming the Ray version. Each has no public
equivalent in the Ray vidpred pins (:data:`TESTED_WITH`); where one appears, it replaces the function here.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
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


def starts_local_ray(address: str | None = None) -> bool:
    """Whether ``ray.init(address)`` starts a Ray of its own on this machine: ``"local"``, or no address (none
    given and no ``RAY_ADDRESS``, which ``ray.init`` reads then) and no running local cluster to join (Ray
    records one in ``<temp dir>/ray/ray_current_cluster``)."""
    address = address or os.environ.get("RAY_ADDRESS")
    if address == "local":
        return True
    return not address and not Path(tempfile.gettempdir(), "ray", "ray_current_cluster").exists()


def init(address: str | None = None, **kwargs: Any) -> None:
    """``ray.init(address, **kwargs)`` unless this process is connected already (``address`` None: ``RAY_ADDRESS``,
    else a running local cluster, else a new one, as ``ray.init`` does); a Ray it starts on this machine (:func:`starts_local_ray`) puts its
    node and every port of it on 127.0.0.1 instead of every interface, so nothing off the machine reaches it.

    That is Ray's single-machine mode, the one it runs on macOS and Windows: the node's address comes from
    ``ray_constants.ENABLE_RAY_CLUSTER``, read once from ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` at import.
    The variable would be inherited by every process started later (a ``ray start --address`` among them
    refuses to run), so the constant is switched off for the start alone. Joining a cluster is left as it is.
    """
    import ray

    if ray.is_initialized():
        return
    if not starts_local_ray(address):
        ray.init(address=address, **kwargs)
        return
    from ray._private import ray_constants

    before = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        ray.init(address=address, **kwargs)
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before
