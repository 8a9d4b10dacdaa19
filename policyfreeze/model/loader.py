"""``--model`` specs → a model: ``torchvision:NAME``, ``pkg.module:factory``, ``file.py:factory``.

Only the command line imports user code, and only through this module.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

from ..errors import PolicyUsageError

SPEC_HELP = "a model is torchvision:NAME, package.module:factory or path/to/file.py:factory"


def build_model(spec: str, *, device: str | None = None) -> Any:
    """Build the model a spec names (pretrained weights are never loaded)."""
    factory = _factory(spec)
    kwargs: dict[str, Any] = {}
    if spec.startswith("torchvision:"):
        kwargs["weights"] = None
    import torch

    try:
        if device is None:
            model = factory(**kwargs)
        else:
            with torch.device(device):
                model = factory(**kwargs)
    except Exception as exc:  # user code: any failure becomes a usage error
        raise PolicyUsageError(f"--model {spec}: building the model failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, torch.nn.Module):
        raise PolicyUsageError(f"--model {spec}: the factory returned {type(model).__name__}, not a torch.nn.Module")
    return model


def _factory(spec: str):
    target, sep, name = spec.rpartition(":")
    if not sep or not target or not name:
        raise PolicyUsageError(f"--model {spec!r}: {SPEC_HELP}")
    if target == "torchvision":
        import torchvision.models

        try:
            return torchvision.models.get_model_builder(name)
        except ValueError:
            known = ", ".join(torchvision.models.list_models()[:8])
            raise PolicyUsageError(
                f"--model {spec}: torchvision has no model {name!r} (for example: {known}, …)"
            ) from None
    module = _load_file(Path(target)) if target.endswith(".py") else _import(target, spec)
    factory = getattr(module, name, None)
    if not callable(factory):
        raise PolicyUsageError(f"--model {spec}: {target} has no callable {name!r}")
    return factory


def _import(module_name: str, spec: str):
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise PolicyUsageError(f"--model {spec}: cannot import {module_name}: {exc}") from None


def _load_file(path: Path):
    if not path.is_file():
        raise PolicyUsageError(f"--model {path}: no such file")
    module_name = "_policyfreeze_model_" + re.sub(r"\W", "_", path.stem)
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise PolicyUsageError(f"--model {path}: running the file failed: {type(exc).__name__}: {exc}") from exc
    return module
