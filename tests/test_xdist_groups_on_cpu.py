"""dev/test.sh runs the suite on pytest-xdist workers with ``--dist loadgroup``; tests/conftest.py puts each
file's tests (or a shared service's) in one group, which xdist keeps on one worker only when the group is
part of the test's node id."""

import pytest


def test_under_loadgroup_a_test_runs_in_its_files_group(request):
    if not request.config.getoption("loadgroup", False):
        pytest.skip("not run by an xdist worker under --dist loadgroup (dev/test.sh runs it so)")
    assert request.node.nodeid.endswith("@tests/test_xdist_groups_on_cpu.py")


def test_a_shared_service_is_one_group(ray_cluster, request):
    if not request.config.getoption("loadgroup", False):
        pytest.skip("not run by an xdist worker under --dist loadgroup (dev/test.sh runs it so)")
    assert request.node.nodeid.endswith("@ray-and-vllm")
