"""Eval-mode pins: ``eval S`` keeps modules in eval mode across ``model.train()``.

A pin is an ``EvalPin`` stored in the module's own ``__dict__`` under
``train``. Instance attributes shadow class methods, so every later
``train()``/``eval()`` that reaches the module — ``model.train()`` recursing
through the children, a wrapper's ``train()``, a direct ``bn.train()`` — calls
the pin instead of ``nn.Module.train``. The pin runs the class's ``train``
(so the children follow the requested mode as usual, and a subclass's own
``train`` override still runs), then puts the module itself back in eval.

Why this and not the alternatives: swapping the module's class (timm's
``FrozenBatchNorm2d``) changes what ``type()`` selects and what a checkpoint
loads into; clearing ``track_running_stats`` (Lightning) normalises with
batch statistics instead of the running ones and leaves dropout on. The pin
changes nothing but the mode: the class, the parameters, the buffers and the
``state_dict`` keys stay exactly as they were.

Because the pin is an ordinary picklable object in ``__dict__``, it travels
with ``copy.deepcopy`` and ``pickle``/``torch.save(model)``; it is not module
state, so ``state_dict()`` neither records nor restores it (like
``requires_grad``: re-apply the policy after building a model).

Unpinning (``train S``) gives the module the mode of its nearest ancestor
that is not pinned, read when the pin is removed (``follow_parents``), not
the mode some earlier ``train()``/``eval()`` call asked for: frameworks
change modes by assigning ``.training`` (Lightning restores every module's
mode that way after a validation loop), and an assignment passes no pin, so
a remembered request can be stale. After that the module is an ordinary
module again and follows every ``model.train()``/``eval()``.

Torch-free: ``tree.py`` asks ``is_pinned`` without importing torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .tree import ModelTree

#: The attribute a pin shadows.
PINNED_METHOD = "train"


class EvalPin:
    """Stands in for one module's ``train``: the children follow the mode, the module stays in eval."""

    def __init__(self, module: Any, requested: bool) -> None:
        self.module = module
        #: The mode the last train()/eval() through the pin asked for: what an unpinned module with no
        #: unpinned ancestor takes back (``follow_parents``).
        self.requested = requested

    def __call__(self, mode: bool = True) -> Any:
        module = self.module
        type(module).train(module, mode)
        self.requested = mode
        module.training = False
        return module

    def __repr__(self) -> str:
        return f"<policyfreeze eval pin on {type(self.module).__name__}>"


def is_pinned(module: Any) -> bool:
    """Whether ``module`` carries an eval pin."""
    return isinstance(vars(module).get(PINNED_METHOD), EvalPin)


def pin(module: Any) -> None:
    """Hold ``module`` in eval mode from now on, whatever ``train()`` is later asked."""
    if not is_pinned(module):
        vars(module)[PINNED_METHOD] = EvalPin(module, module.training)
    module.training = False


def unpin(module: Any) -> None:
    """Remove the pin: the module takes the mode the last ``train()``/``eval()`` through the pin asked for.

    ``follow_parents`` then corrects that to the parent's mode where the model tree is known.
    """
    held = vars(module).pop(PINNED_METHOD, None)
    if isinstance(held, EvalPin):
        module.training = held.requested


def follow_parents(tree: ModelTree, modules: list[Any], unpinned: list[int]) -> None:
    """Give each module just unpinned (by module id, ascending) the mode of its nearest unpinned ancestor.

    That ancestor's ``.training`` is what the last ``model.train()``/``eval()``
    or the last assignment left, so the module rejoins its parent however
    modes were changed while it was pinned. A module whose ancestors are all
    pinned (or the root) keeps the mode its own pin last saw asked for.
    Ids ascend in pre-order, so an ancestor unpinned in the same call is
    settled first.
    """
    if not unpinned:
        return
    ids = {name: module_id for module_id, name in enumerate(tree.module_names)}
    for module_id, aliases in enumerate(tree.module_aliases):
        ids.update(dict.fromkeys(aliases, module_id))
    for module_id in unpinned:
        module = modules[module_id]
        name = tree.module_names[module_id]
        while name:
            name = name.rpartition(".")[0]
            parent = modules[ids[name]]
            if not is_pinned(parent):
                module.training = parent.training
                break


def snapshot(module: Any) -> tuple[EvalPin | None, bool]:
    """What ``restore`` needs to undo any pin or unpin of ``module``."""
    held = vars(module).get(PINNED_METHOD)
    return (held if isinstance(held, EvalPin) else None), module.training


def restore(module: Any, state: tuple[EvalPin | None, bool]) -> None:
    held, training = state
    if held is None:
        if is_pinned(module):
            del vars(module)[PINNED_METHOD]
    else:
        vars(module)[PINNED_METHOD] = held
    module.training = training
