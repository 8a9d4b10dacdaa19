"""What a stage change needs to know about the processes and compilers around the model.

DistributedDataParallel fixes, when it wraps, which parameters it averages;
FSDP2 (``fully_shard``) follows ``requires_grad`` as it changes; dynamo
recompiles a compiled model for each new set of ``requires_grad`` flags.
Torch is imported here only when a model or a process group needs it.
"""

from __future__ import annotations

import sys
from typing import Any


def world_size() -> int:
    """Processes in the default process group (1 when none is initialised)."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return 1
    return dist.get_world_size()


def sharded(tensor: Any) -> bool:
    """Whether ``tensor`` is an FSDP2 (DTensor) parameter, which FSDP2 keeps in step across ranks itself."""
    return any(cls.__name__ == "DTensor" for cls in type(tensor).__mro__)


def release(wrapper: Any) -> None:
    """Remove the gradient hooks an old DistributedDataParallel left on the parameters.

    Its reducer would otherwise keep firing on every backward until the
    object is collected (DDP wrappers sit in reference cycles).
    """
    remove = getattr(wrapper, "_remove_autograd_hooks", None)
    if callable(remove):
        remove()


def is_compiled(model: Any) -> bool:
    """Whether ``model`` is ``torch.compile(model)`` or had ``model.compile()`` called on it."""
    return (
        any(cls.__name__ == "OptimizedModule" for cls in type(model).__mro__)
        or getattr(model, "__dict__", {}).get("_compiled_call_impl") is not None
    )


def recompile_limit() -> tuple[str, int]:
    """The setting and value of the compilations dynamo keeps per function before eager.

    ``recompile_limit`` from torch 2.6; ``cache_size_limit`` before it (the
    package allows torch 2.2).
    """
    from torch._dynamo import config

    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    return f"torch._dynamo.config.{name}", int(getattr(config, name))
