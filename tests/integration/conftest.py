"""pytest fixtures for the integration tests (see harness.py)."""

import pytest

from harness import ProcessGroup


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: moves a lot of data or waits on timeouts")


@pytest.fixture
def group(tmp_path):
    """Processes started by one test; all killed when it ends."""
    g = ProcessGroup(tmp_path)
    yield g
    g.kill_all()


@pytest.fixture(scope="module")
def module_group(tmp_path_factory):
    """Processes shared by the tests of one file; killed after the last one."""
    g = ProcessGroup(tmp_path_factory.mktemp("module"))
    yield g
    g.kill_all()
