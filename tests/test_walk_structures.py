"""The walk on structures real models rarely have: cycles, shared modules at every level, deep nesting,
wrappers that hold more than the module they wrap, dotted names, odd norm layers and dtypes.

The walk has two paths (a quick recursive one for the common model, a careful one with a memo and no
recursion limit); every structure here must give the same tree through both.
"""

from __future__ import annotations

import sys

import models
import pytest
import torch
from torch import nn

import policyfreeze
from policyfreeze.engine.resolve import evaluate
from policyfreeze.errors import PolicyUsageError
from policyfreeze.language.source import Source
from policyfreeze.lint import lint
from policyfreeze.model import manifest as manifests
from policyfreeze.model import walk as walker
from policyfreeze.model.tree import NO_GRAD_DTYPES, ModelTree, can_require_grad
from policyfreeze.model.walk import tree_of


class Pair(nn.Module):
    """One module registered twice: every level of a stack of these doubles the names."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.a = inner
        self.b = inner


def diamond(depth: int) -> nn.Module:
    model: nn.Module = nn.Linear(2, 2)
    for _ in range(depth):
        model = Pair(model)
    return model


def chain(depth: int) -> nn.Module:
    model: nn.Module = nn.Linear(2, 2)
    for _ in range(depth):
        model = nn.Sequential(model, nn.ReLU())
    return model


def shared_subtrees() -> nn.Module:
    """A shared block holding a shared leaf, reached under three names, one of them below another copy."""
    act = nn.ReLU()
    block = nn.Sequential(nn.Linear(2, 2), act, nn.Sequential(nn.Linear(2, 2), act))
    root = nn.Module()
    root.first = block
    root.again = nn.Sequential(block, nn.Linear(2, 2))
    root.third = block
    return root


def wrapped_with_extras() -> nn.Module:
    """A DataParallel that holds something besides its module: it sits beside the module's children."""
    wrapper = nn.DataParallel(models.tiny())
    wrapper.extra = nn.Linear(2, 2)
    return wrapper


STRUCTURES = {
    **{name: factory for name, factory in models.FACTORIES.items() if name != "resnet18"},
    "diamond-6": lambda: diamond(6),
    "chain-300": lambda: chain(300),
    "shared-subtrees": shared_subtrees,
    "wrapped-with-extras": wrapped_with_extras,
    "compiled-shared": lambda: torch.compile(shared_subtrees()),
}


def columns(tree: ModelTree) -> tuple:
    return (tree.names, tree.ends, tree.param_nodes, tree.module_nodes, tree.param_slot_ids, tree.module_slot_ids)


@pytest.mark.parametrize("name", list(STRUCTURES))
def test_the_quick_and_the_careful_walk_give_the_same_tree(name, monkeypatch):
    model = STRUCTURES[name]()
    quick = walker.walk(model)
    monkeypatch.setattr(walker, "QUICK_WALK_NODES", -1)  # the quick walk gives up at once
    careful = walker.walk(model)
    monkeypatch.setattr(walker, "RECURSION_DEPTH", 0)  # and walks without recursion
    looped = walker.walk(model)
    assert columns(quick.tree) == columns(careful.tree) == columns(looped.tree)
    assert quick.tree == careful.tree == looped.tree
    for a, b in ((quick, careful), (quick, looped)):
        assert all(x is y for x, y in zip(a.tensors, b.tensors, strict=True))
        assert all(x is y for x, y in zip(a.modules, b.modules, strict=True))


def test_every_name_of_a_shared_module_is_a_node():
    tree = tree_of(shared_subtrees())
    torch_names = {n for n, _ in shared_subtrees().named_modules(remove_duplicate=False)}
    torch_names |= {n for n, _ in shared_subtrees().named_parameters(remove_duplicate=False)}
    assert set(tree.names) == torch_names
    block = next(m for m in tree.modules if m.name == "first")
    assert block.aliases == ("again.0", "third")
    relu = next(m for m in tree.modules if m.name == "first.1")
    assert relu.aliases == ("first.2.1", "again.0.1", "again.0.2.1", "third.1", "third.2.1")
    plan = policyfreeze.resolve(shared_subtrees(), "freeze third.0")  # an alias name reaches the tensor
    assert plan.frozen == ["first.0.weight", "first.0.bias"]


def test_a_wrapper_s_other_children_sit_beside_the_wrapped_module_s():
    tree = tree_of(wrapped_with_extras())
    assert [tree.names[n] for n in tree.children_of(0)] == ["0", "1", "2", "3", "extra"]


def test_a_wrapper_and_its_module_with_one_name_each_is_refused():
    wrapper = nn.DataParallel(models.tiny())
    wrapper.add_module("0", nn.Linear(1, 1))
    with pytest.raises(PolicyUsageError, match="DataParallel around a Sequential, and both have '0'"):
        policyfreeze.resolve(wrapper, "freeze all")


@pytest.mark.parametrize(
    ("build", "message"),
    [
        pytest.param(lambda m: setattr(m[2], "back", m), "'2.back' is the model itself", id="back-to-root"),
        pytest.param(lambda m: setattr(m[2], "me", m[2]), "'2.me' is '2', which contains it", id="itself"),
        pytest.param(lambda m: setattr(m[2][0], "up", m[2]), "'2.0.up' is '2', which contains it", id="back-to-parent"),
    ],
)
def test_a_model_that_contains_itself_is_refused(build, message):
    model = models.tiny()
    build(model)
    for run in (lambda: policyfreeze.resolve(model, "freeze all"), lambda: tree_of(model)):
        with pytest.raises(PolicyUsageError, match=message) as caught:
            run()
        assert "weakref" in caught.value.help


def test_a_model_shared_at_every_level_is_refused_past_the_limit():
    with pytest.raises(PolicyUsageError, match="more than 1,000,000 names through shared modules"):
        tree_of(diamond(40))
    assert len(tree_of(diamond(12)).names) == 4 * 2**12 - 1  # every name, below the limit


def test_the_walk_needs_no_room_on_the_stack(monkeypatch):
    """Called with the recursion limit nearly reached, the walk still walks (without recursion)."""
    model = chain(50)
    expected = columns(tree_of(model))

    def deep(levels: int) -> tuple:
        return deep(levels - 1) if levels else columns(tree_of(model))

    def depth() -> int:
        frame, count = sys._getframe(), 0
        while frame:
            frame, count = frame.f_back, count + 1
        return count

    assert deep(sys.getrecursionlimit() - depth() - 30) == expected


def test_a_dotted_child_name_resolves_but_cannot_be_written_to_a_manifest():
    model = nn.Module()
    model._modules["dot.ted"] = nn.Linear(1, 1)
    plan = policyfreeze.resolve(model, "freeze all")
    assert plan.frozen == ["dot.ted.weight", "dot.ted.bias"]
    with pytest.raises(PolicyUsageError, match="registered under the name 'dot.ted'"):
        manifests.from_tree(plan.tree)


class StrictNorm(nn.BatchNorm1d):
    """A norm layer whose __getattr__ raises KeyError (not AttributeError) for what it lacks."""

    def __getattr__(self, name: str):
        if name == "track_running_stats":
            raise KeyError(name)
        return super().__getattr__(name)


def test_a_norm_layer_whose_getattr_raises_keyerror_does_not_crash_lint():
    model = nn.Sequential(nn.Linear(2, 2), StrictNorm(2))
    del model[1].__dict__["track_running_stats"]
    tree = tree_of(model)
    assert [m.running_stats for m in tree.modules] == [False, False, False]
    findings = list(lint(Source("p.freeze", "freeze all\nunfreeze 0\n"), tree))
    assert all(f.code != "PF206" for f in findings)


def test_the_dtype_table_is_torch_s():
    dtypes = {v for v in vars(torch).values() if isinstance(v, torch.dtype)}
    cannot = {str(d).removeprefix("torch.") for d in dtypes if not (d.is_floating_point or d.is_complex)}
    assert cannot == NO_GRAD_DTYPES
    assert can_require_grad("bcomplex32") and can_require_grad("float8_e4m3fn") and not can_require_grad("uint4")


@pytest.mark.filterwarnings("ignore:BComplex32 support is experimental:UserWarning")
@pytest.mark.parametrize(("dtype", "errors"), [("bcomplex32", 0), ("complex64", 0), ("int64", 1), ("bool", 1)])
def test_unfreezing_asks_torch_whether_the_dtype_can_require_gradients(dtype, errors):
    model = nn.Module()
    model.table = nn.Parameter(torch.zeros(2, dtype=getattr(torch, dtype), device="meta"), requires_grad=False)
    policy = policyfreeze.parse("unfreeze all")
    live = tree_of(model)
    stored = manifests.to_tree(manifests.parse(manifests.from_tree(live).to_json()))
    for tree in (live, stored):
        found = evaluate(tree, policy).errors
        assert [e.code for e in found] == ["PF207"] * errors
