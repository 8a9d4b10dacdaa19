import pytest
import torchvision


@pytest.fixture(scope="session")
def resnet18_factory():
    return lambda: torchvision.models.resnet18(weights=None)
