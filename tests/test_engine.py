"""The engine end to end: classic recipes, gradients, all-or-nothing, wrappers, the API."""

import socket
from pathlib import Path

import pytest
import torch
import torchvision
from models import intparam
from torch import nn

import policyfreeze
from policyfreeze import PolicyError
from policyfreeze.engine import commit as applier

POLICIES = Path(__file__).parent.parent / "policies"


def resnet18():
    return torchvision.models.resnet18(weights=None)


def flags(model):
    return {name: p.requires_grad for name, p in model.named_parameters()}


# The three classic hand-written recipes and the policies that replace them.


def loop_linear_probe(model):
    for p in model.parameters():
        p.requires_grad = False
    model.fc = nn.Linear(model.fc.in_features, 1000)


def loop_layer1_layer2(model):
    for name, p in model.named_parameters():
        if "layer1" in name or "layer2" in name:
            p.requires_grad = False


def loop_first_two_children(model):
    for child in list(model.children())[:2]:
        for p in child.parameters():
            p.requires_grad = False


def loop_bitfit(model):
    for name, p in model.named_parameters():
        p.requires_grad = name.endswith(".bias")


def loop_stem_and_two_stages(model):
    for module in (model.conv1, model.bn1, model.layer1, model.layer2):
        for p in module.parameters():
            p.requires_grad = False


@pytest.mark.parametrize(
    ("loop", "policy_file"),
    [
        (loop_linear_probe, "resnet18-linear-probe.freeze"),
        (loop_layer1_layer2, "freeze-layer1-layer2.freeze"),
        (loop_first_two_children, "freeze-first-two-children.freeze"),
        (loop_bitfit, "bitfit.freeze"),
        (loop_stem_and_two_stages, "resnet-freeze-stem-and-stages-1-2.freeze"),
    ],
)
def test_policy_file_equals_the_hand_written_loop(loop, policy_file):
    by_loop = resnet18()
    loop(by_loop)
    by_policy = resnet18()
    policyfreeze.apply(by_policy, POLICIES / policy_file)
    assert flags(by_policy) == flags(by_loop)


def test_equivalent_one_line_policies():
    for text, loop in [
        ("freeze all; unfreeze fc", loop_linear_probe),
        ("freeze match /layer[12]/", loop_layer1_layer2),
        ("freeze children[0:2]", loop_first_two_children),
    ]:
        by_loop, by_policy = resnet18(), resnet18()
        loop(by_loop)
        policyfreeze.apply(by_policy, text)
        assert flags(by_policy) == flags(by_loop), text


def test_every_shipped_policy_parses():
    files = sorted(POLICIES.glob("*.freeze"))
    assert files
    for path in files:
        policyfreeze.load(path)


def test_gradients_really_stop():
    model = resnet18()
    policyfreeze.apply(model, POLICIES / "resnet18-linear-probe.freeze")
    model(torch.randn(2, 3, 64, 64)).sum().backward()
    for name, p in model.named_parameters():
        if name.startswith("fc."):
            assert p.grad is not None, name
        else:
            assert p.grad is None, name


def test_resolve_is_pure_and_apply_matches_the_plan():
    model = resnet18()
    before = flags(model)
    plan = policyfreeze.resolve(model, "freeze all; unfreeze layer4")
    assert flags(model) == before
    report = policyfreeze.apply(model, "freeze all; unfreeze layer4")
    assert flags(model) == plan.requires_grad == report.requires_grad


def test_failed_apply_changes_nothing():
    model = intparam()
    model.linear.weight.requires_grad_(False)
    before = flags(model)
    with pytest.raises(PolicyError) as info:
        policyfreeze.apply(model, "unfreeze all")
    assert info.value.code == "PF207"
    assert flags(model) == before


@pytest.mark.parametrize("fail_at", [1, 2, 30, 60])
def test_a_fault_part_way_through_apply_is_rolled_back(monkeypatch, fail_at):
    model = resnet18()
    before = flags(model)
    calls = []

    def flaky(tensor, flag):
        calls.append(tensor)
        if len(calls) == fail_at:
            raise RuntimeError("injected")
        tensor.requires_grad_(flag)

    monkeypatch.setattr(applier, "set_requires_grad", flaky)
    with pytest.raises(PolicyError, match="undone"):
        policyfreeze.apply(model, "freeze all; unfreeze fc")
    assert len(calls) == fail_at
    assert flags(model) == before


class _Holder(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.module = inner


@pytest.mark.parametrize(
    "wrap",
    [
        pytest.param(lambda m: torch.compile(m), id="torch.compile"),
        pytest.param(lambda m: nn.DataParallel(m), id="DataParallel"),
        pytest.param(lambda m: torch.compile(nn.DataParallel(m)), id="compile(DataParallel)"),
    ],
)
def test_wrapped_models_give_the_same_plan(wrap):
    policy = "freeze children[0:2]; unfreeze *.fc.*; freeze match /layer[12]/; freeze layer4.children[-1]"
    bare = policyfreeze.resolve(resnet18(), policy)
    model = resnet18()
    wrapped = wrap(model)
    plan = policyfreeze.resolve(wrapped, policy)
    assert plan.requires_grad == bare.requires_grad
    assert plan.decisions == bare.decisions
    policyfreeze.apply(wrapped, policy)
    assert flags(model) == bare.requires_grad


def test_a_user_module_called_module_is_not_a_wrapper():
    plan = policyfreeze.resolve(_Holder(nn.Linear(2, 2)), "freeze module.weight")
    assert plan.requires_grad == {"module.weight": False, "module.bias": True}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_apply_refuses_a_model_already_wrapped_in_ddp():
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    try:
        model = nn.Linear(2, 2)
        ddp = nn.parallel.DistributedDataParallel(model)
        with pytest.raises(PolicyError, match="apply the policy to the bare model, then wrap"):
            policyfreeze.apply(ddp, "freeze all")
        assert flags(model) == {"weight": True, "bias": True}
        # resolving is still allowed: it changes nothing
        assert policyfreeze.resolve(ddp, "freeze all").requires_grad == {"weight": False, "bias": False}
    finally:
        dist.destroy_process_group()


def test_a_lazy_module_not_yet_initialized_is_refused_and_left_alone():
    model = nn.Sequential(nn.LazyLinear(4), nn.Linear(4, 2))
    for call in (policyfreeze.resolve, policyfreeze.apply):
        with pytest.raises(PolicyError, match=r"parameter 0\.weight \(and 1 more\) is not initialized yet") as raised:
            call(model, "freeze 0")
        assert "run one forward pass with a dummy batch" in str(raised.value)
    assert all(p.requires_grad for p in model.parameters())
    model(torch.zeros(1, 3))  # initialized: the policy applies
    policyfreeze.apply(model, "freeze 0")
    assert flags(model) == {"0.weight": False, "0.bias": False, "1.weight": True, "1.bias": True}


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (None, "not NoneType"),
        ("resnet18", "not str"),
        ([nn.Linear(2, 2)], "not list"),
        (nn.Parameter(torch.zeros(1)), "not Parameter"),
        (nn.Linear, "not the class Linear"),
    ],
    ids=["none", "str", "list", "parameter", "class"],
)
def test_what_is_not_a_module_is_a_usage_error(model, message):
    for call in (policyfreeze.resolve, policyfreeze.apply, lambda m, p: policyfreeze.Freezer(m, p)):
        with pytest.raises(
            policyfreeze.PolicyUsageError, match=f"a policy applies to a torch.nn.Module instance, {message}"
        ):
            call(model, "freeze all")


def test_policy_can_be_a_policy_text_or_path():
    text = (POLICIES / "bitfit.freeze").read_text()
    from_path = policyfreeze.resolve(resnet18(), POLICIES / "bitfit.freeze").requires_grad
    assert policyfreeze.resolve(resnet18(), text).requires_grad == from_path
    assert policyfreeze.resolve(resnet18(), policyfreeze.parse(text)).requires_grad == from_path
    assert policyfreeze.resolve(resnet18(), policyfreeze.load(POLICIES / "bitfit.freeze")).requires_grad == from_path


def test_a_string_naming_a_file_gets_a_hint():
    path = str(POLICIES / "bitfit.freeze")
    with pytest.raises(PolicyError) as info:
        policyfreeze.resolve(resnet18(), path)
    assert "pathlib.Path" in info.value.help
    assert "pathlib.Path" in str(info.value)


def test_not_a_policy():
    with pytest.raises(PolicyError, match="not int"):
        policyfreeze.resolve(resnet18(), 3)


def test_missing_file_is_a_policy_error(tmp_path):
    with pytest.raises(PolicyError, match="no such file"):
        policyfreeze.load(tmp_path / "missing.freeze")


def test_not_utf8_names_the_byte_offset(tmp_path):
    path = tmp_path / "latin1.freeze"
    path.write_bytes("freeze caf\xe9\n".encode("latin-1"))
    with pytest.raises(PolicyError, match="byte offset 10"):
        policyfreeze.load(path)


def test_selects_nothing_warns_on_apply():
    with pytest.warns(policyfreeze.PolicyWarning, match="did you mean 'layer1'"):
        policyfreeze.apply(resnet18(), "freeze layr1")


def test_schedule_stage_must_match_the_unit():
    policy = "freeze all\nat epoch 2 { unfreeze fc }"
    assert policyfreeze.resolve(resnet18(), policy, epoch=2).requires_grad["fc.weight"] is True
    with pytest.raises(PolicyError, match="pass epoch="):
        policyfreeze.resolve(resnet18(), policy, step=2)
    with pytest.raises(PolicyError, match="not several"):
        policyfreeze.resolve(resnet18(), policy, epoch=1, step=1)
    with pytest.raises(PolicyError, match="0 or more"):
        policyfreeze.resolve(resnet18(), policy, epoch=-1)


def test_decision_carries_provenance():
    plan = policyfreeze.resolve(resnet18(), POLICIES / "resnet18-linear-probe.freeze")
    decision = plan.decisions["fc.weight"]
    assert (decision.verb, decision.line, decision.column, decision.text) == ("unfreeze", 10, 1, "unfreeze fc")
    assert decision.source.endswith("resnet18-linear-probe.freeze")
    assert str(decision).endswith("resnet18-linear-probe.freeze:10 unfreeze fc")


def test_json_report_lists_pin_changes():
    report = policyfreeze.apply(resnet18(), "eval layer1.0 & type(BatchNorm2d)")
    pins = report.to_dict()["pin_changes"]
    assert [(p["module"], p["before"], p["after"]) for p in pins] == [
        ("layer1.0.bn1", False, True),
        ("layer1.0.bn2", False, True),
    ]
    assert pins[0]["decided_by"]["verb"] == "eval"


@pytest.mark.parametrize("path", [None, 3, b"policies"], ids=["none", "int", "bytes"])
def test_load_wants_a_path(path):
    with pytest.raises(policyfreeze.PolicyUsageError, match="a policy file is a path"):
        policyfreeze.load(path)


@pytest.mark.parametrize(
    "text",
    [
        "freeze all; unfreeze fc\nat epoch 2 { unfreeze layer4 with lr_scale=0.1 }\nat epoch 2 { freeze layer4.1 }\n"
        "at epoch 5 { unfreeze layer3; eval type(BatchNorm2d) }\nat epoch 7 { train layer3; freeze fc }",
        "eval all\nat phase 1 { train layer1, layer2; unfreeze nothing_here }\nat phase 3 { freeze match /bn/ }",
    ],
)
def test_advancing_a_plan_stage_by_stage_equals_resolving_each_stage(text):
    from policyfreeze.engine.resolve import advance, evaluate
    from policyfreeze.model.walk import tree_of
    from policyfreeze.report.report import Report

    policy = policyfreeze.parse(text)
    tree = tree_of(torchvision.models.resnet18())
    plan = evaluate(tree, policy, 0)
    for at in policy.milestones:
        full, stepped = evaluate(tree, policy, at), advance(plan, at)
        for column in ("param_flags", "param_deciders", "module_pins", "module_deciders", "statement_decisions"):
            assert getattr(stepped, column) == getattr(full, column), (at, column)
        # What the step reports is the change from the stage before, not from the model as built.
        assert [c.name for c in Report(stepped, applied=False).changes] == [
            name for name, old, new in zip(tree.param_names, plan.param_flags, full.param_flags) if old != new
        ]
        new_warnings = {w.line for w in full.warnings} - {w.line for w in plan.warnings}
        assert {w.line for w in stepped.warnings} == new_warnings
        plan = stepped


@pytest.mark.parametrize(
    ("policy", "help_text"),
    [
        (
            "freeze layer*.weight",
            "'layer*.weight' matches nothing: '*' inside a segment stays within it; "
            "did you mean 'layer*.*.weight', where a whole '*' segment spans several?",
        ),
        ("freeze layer9", "'layer9' matches nothing; did you mean 'layer4'?"),
        ("freeze lay*r9.x", "'lay*r9.x' matches nothing in this model"),
    ],
)
def test_a_glob_that_selects_nothing_gets_help_that_points_the_right_way(policy, help_text):
    plan = policyfreeze.resolve(torchvision.models.resnet18(), policy)
    assert [w.help for w in plan.warnings if w.code == "PF201"] == [help_text]


RESNET_RANGE = "drop it from the list; indices run 0..9, or -10..-1 from the end"
BLOCK_RANGE = "drop it from the list; indices run 0..1, or -2..-1 from the end"


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (
            "freeze children[0, 10]",
            [("'children[0, 10]': index 10 selects nothing: the model (ResNet) has 10 children (0..9)", RESNET_RANGE)],
        ),
        (
            "freeze children[10, 0, -11, 20:, 8:]",
            [
                (
                    "'children[10, 0, -11, 20:, 8:]': index 10 selects nothing: the model (ResNet) has 10 children (0..9)",
                    RESNET_RANGE,
                ),
                (
                    "'children[10, 0, -11, 20:, 8:]': index -11 selects nothing: the model (ResNet) has 10 children (0..9)",
                    RESNET_RANGE,
                ),
                (
                    "'children[10, 0, -11, 20:, 8:]': slice '20:' selects nothing: the model (ResNet) has 10 children (0..9)",
                    RESNET_RANGE,
                ),
            ],
        ),
        (
            "eval layer4.children[0, 2:]",  # a statement on modules
            [("'layer4.children[0, 2:]': slice '2:' selects nothing: 'layer4' has 2 children (0..1)", BLOCK_RANGE)],
        ),
        (
            "freeze layer*.children[1, 2]",
            [
                (
                    "'layer*.children[1, 2]': index 2 selects nothing: "
                    "the 4 modules 'layer*' matches have at most 2 children (0..1)",
                    BLOCK_RANGE,
                )
            ],
        ),
        ("freeze children[0, 3]", []),  # 3 is maxpool: a child without parameters is still a child
        ("freeze children[0, -10, 9:20]", []),
        # When the whole statement selects nothing, its one PF201 names the item.
        (
            "freeze children[10]",
            [
                (
                    "'freeze children[10]' selects no parameters in this model",
                    "index 10 selects nothing: the model (ResNet) has 10 children (0..9)",
                )
            ],
        ),
        (
            "freeze children[2, 10]",  # relu has no parameters
            [
                (
                    "'freeze children[2, 10]' selects no parameters in this model",
                    "index 10 selects nothing: the model (ResNet) has 10 children (0..9)",
                )
            ],
        ),
    ],
)
def test_an_index_list_item_that_selects_nothing_is_named(policy, expected):
    from policyfreeze.language.source import Source
    from policyfreeze.lint import lint
    from policyfreeze.model import manifest
    from policyfreeze.model.walk import tree_of

    model = resnet18()
    plan = policyfreeze.resolve(model, policy)
    assert [(w.message, w.help) for w in plan.warnings if w.code == "PF201"] == expected
    assert {w.line for w in plan.warnings} <= {1}
    tree = tree_of(model)
    from_manifest = manifest.to_tree(manifest.parse(manifest.from_tree(tree).to_json()))
    for linted in (tree, from_manifest):
        found = [(f.message, f.help) for f in lint(Source("p.freeze", policy), linted) if f.code == "PF201"]
        assert sorted(found) == sorted(expected)  # lint orders one statement's findings by message


def test_an_index_past_the_last_layer_of_a_llama_fails_strict_lint(tmp_path, capsys):
    """PEFT's layers_to_transform=[0, 40] on a two-layer Llama: with the model and with its manifest."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from policyfreeze.cli import main
    from policyfreeze.model import manifest
    from policyfreeze.model.walk import tree_of

    config = LlamaConfig(
        num_hidden_layers=2, hidden_size=16, intermediate_size=32, num_attention_heads=2, vocab_size=64
    )
    tree = tree_of(LlamaForCausalLM(config))
    (tmp_path / "llama.manifest.json").write_text(manifest.from_tree(tree).to_json(), encoding="utf-8")
    (tmp_path / "p.freeze").write_text("freeze all\nunfreeze model.layers.children[0, 40] & *.q_proj\n")
    assert (
        main(["lint", "--strict", str(tmp_path / "p.freeze"), "--manifest", str(tmp_path / "llama.manifest.json")]) == 1
    )
    out = capsys.readouterr().out
    assert (
        "p.freeze:2:1: PF201 'model.layers.children[0, 40]': index 40 selects nothing: "
        "'model.layers' has 2 children (0..1)\n"
    ) in out
    plan = policyfreeze.resolve(LlamaForCausalLM(config), tmp_path / "p.freeze")
    assert [w.code for w in plan.warnings] == ["PF201"]
    assert plan.trainable == ["model.layers.0.self_attn.q_proj.weight"]
