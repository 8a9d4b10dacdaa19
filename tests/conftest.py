import os
import shutil
import tempfile

import pytest
import torchvision

# The tests never read or write the user's model cache: from the start of the session every process points
# POLICYFREEZE_CACHE_DIR at a temporary directory (so do the processes tests start, with a copy of
# os.environ), and each test gets an empty cache of its own, so no test depends on what another cached.
CACHE_DIR_VARIABLE = "POLICYFREEZE_CACHE_DIR"
_session_cache: str | None = None


def pytest_configure(config):
    global _session_cache
    _session_cache = tempfile.mkdtemp(prefix="policyfreeze-test-cache-")
    os.environ[CACHE_DIR_VARIABLE] = _session_cache


def pytest_unconfigure(config):
    if _session_cache is not None:
        shutil.rmtree(_session_cache, ignore_errors=True)


@pytest.fixture(autouse=True)
def model_cache(tmp_path_factory, monkeypatch):
    """This test's model cache directory (created when something is cached)."""
    directory = tmp_path_factory.mktemp("model-cache") / "policyfreeze"
    monkeypatch.setenv(CACHE_DIR_VARIABLE, str(directory))
    return directory


@pytest.fixture(scope="session")
def resnet18_factory():
    return lambda: torchvision.models.resnet18(weights=None)


def pytest_collection_modifyitems(config, items):
    """The code checks (ruff, mypy) first: CI reports a style or type error before the long tests."""
    items.sort(key=lambda item: item.path.name != "test_code_quality.py")
