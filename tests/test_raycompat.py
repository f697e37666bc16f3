"""The private Ray internals vidpred relies on (vidpred/raycompat.py) are still where that module reads
them: each check fails with the installed Ray's version and what moved, so an upgrade says what to fix."""

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
