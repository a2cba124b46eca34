"""The Cluster base without a scheduler: job naming and scale arithmetic."""

from __future__ import annotations

import pytest

from shoal.comm import Security
from shoal.deploy.cluster import Cluster, Job


class Sized(Cluster):
    processes = 3
    job_cores = 6
    job_memory = 2**30


def cluster() -> Sized:
    return Sized(security=Security(token="t"), asynchronous=True)


def test_a_job_owns_its_workers_by_name() -> None:
    job = Job("ssh-1")
    assert job.owns("ssh-1") and job.owns("ssh-1-0") and job.owns("ssh-1-12")
    assert not job.owns("ssh-10") and not job.owns("ssh-10-1") and not job.owns("ssh")


@pytest.mark.parametrize(
    ("request_", "jobs"),
    [({"n": 0}, 0), ({"n": 1}, 1), ({"n": 3}, 1), ({"n": 4}, 2), ({"jobs": 5}, 5),
     ({"cores": 7}, 2), ({"memory": "1.5GiB"}, 2), ({"memory": 2**30}, 1)],
)  # fmt: skip
def test_scale_requests_become_jobs(request_: dict[str, object], jobs: int) -> None:
    assert cluster().jobs_for(**request_) == jobs  # type: ignore[arg-type]


def test_a_cluster_without_job_sizes_refuses_cores_and_memory() -> None:
    plain = Cluster(security=Security(token="t"), asynchronous=True)
    with pytest.raises(ValueError, match="cores"):
        plain.jobs_for(cores=2)
    with pytest.raises(ValueError, match="memory"):
        plain.jobs_for(memory="1GB")
    with pytest.raises(TypeError, match="exactly one"):
        plain.jobs_for()
