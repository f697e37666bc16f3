"""The private Ray internals vidpred relies on (vidpred/raycompat.py) are still where that module reads
them: each check fails with the installed Ray's version and what moved, so an upgrade says what to fix."""

import inspect

import ray
import ray.data

from vidpred import raycompat

WHERE = f"ray {ray.__version__} (vidpred.raycompat was written for {raycompat.TESTED_WITH})"


def test_execution_index_is_read_where_ray_data_counts_it():
    ctx = ray.data.DataContext()
    assert isinstance(getattr(ctx, "_execution_idx", None), int), \
        f"{WHERE}: DataContext has no int _execution_idx: FileSource's per-epoch order needs another source"
    from ray.data._internal.execution.callbacks import execution_idx_update_callback as counter

    source = open(counter.__file__).read()
    assert "_execution_idx += 1" in source, \
        f"{WHERE}: Ray Data no longer counts executions in DataContext._execution_idx"
    ctx._execution_idx = 3
    assert raycompat.execution_index(ctx) == 3 and raycompat.execution_index(None) == 0


def test_worker_output_dispatcher_takes_named_handlers():
    dispatcher = raycompat.worker_output_dispatcher()
    for method in ("add_handler", "remove_handler"):
        assert callable(getattr(dispatcher, method, None)), \
            f"{WHERE}: the worker-output dispatcher has no {method}: vidpred.console.RayOutput cannot file Ray's output"
    seen = []
    dispatcher.add_handler("vidpred_compat_check", seen.append)
    try:
        dispatcher.emit({"lines": ["x"], "pid": 1})
    finally:
        dispatcher.remove_handler("vidpred_compat_check")
    assert seen == [{"lines": ["x"], "pid": 1}], f"{WHERE}: the dispatcher's handlers no longer get each batch"


def test_single_machine_mode_is_read_where_init_switches_it():
    from ray._private import ray_constants, services

    assert isinstance(getattr(ray_constants, "ENABLE_RAY_CLUSTER", None), bool), \
        f"{WHERE}: ray_constants has no bool ENABLE_RAY_CLUSTER: raycompat.init cannot keep a local Ray on loopback"
    source = inspect.getsource(services.get_node_ip_address)
    assert "ENABLE_RAY_CLUSTER" in source and "get_localhost_ip" in source, \
        f"{WHERE}: a node's address no longer comes from ENABLE_RAY_CLUSTER: a local Ray may listen off loopback"
