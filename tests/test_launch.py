"""Launch guards that must hold before any worker starts."""

import pytest

from vidpred import config
from vidpred.train.launch import check_room_for_data


@pytest.fixture(scope="module")
def two_cpu_ray():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield
    ray.shutdown()


@pytest.mark.slow
def test_workers_that_take_every_cpu_are_refused(two_cpu_ray):
    # 2 × 1 CPU on a 2-CPU box: Ray Data would never get a CPU and the run would hang forever.
    with pytest.raises(config.ConfigError, match=r"train.num_workers × train.cpus_per_worker = 2 × 1"):
        check_room_for_data(config.load(overrides=["train.cpus_per_worker=1"]))
    check_room_for_data(config.load())  # the default, 2 × 0.5, leaves one CPU for decoding
