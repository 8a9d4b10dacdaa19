"""LR schedulers across stage changes: every torch scheduler class keeps an added group on its schedule."""

import math
import warnings

import pytest
import torch
from models import tiny
from torch import nn
from torch.optim import lr_scheduler as s

import policyfreeze
from policyfreeze import Freezer, PolicyUsageError, PolicyWarning

BASE_LR, SCALE = 0.1, 0.1
STEPS, ADDED_AT, FROZEN_AT = 14, 4, 9
# The head trains from the start; layer 0 joins at step 4 with a tenth of the base rate (the policy's
# ratio); the head is frozen again at step 9, leaving its group empty but in place.
POLICY = f"""\
freeze all; unfreeze 3
at step {ADDED_AT} {{ unfreeze 0 with lr_scale={SCALE} }}
at step {FROZEN_AT} {{ unfreeze 2.0 with lr_scale={SCALE}; freeze 3 }}
"""

SCHEDULERS = {
    "LambdaLR": lambda o: s.LambdaLR(o, lambda step: 0.9**step),
    "MultiplicativeLR": lambda o: s.MultiplicativeLR(o, lambda step: 0.95),
    "StepLR": lambda o: s.StepLR(o, step_size=3, gamma=0.5),
    "MultiStepLR": lambda o: s.MultiStepLR(o, milestones=[3, 6, 10], gamma=0.5),
    "ConstantLR": lambda o: s.ConstantLR(o, factor=0.5, total_iters=6),
    "LinearLR": lambda o: s.LinearLR(o, start_factor=0.25, total_iters=8),
    "ExponentialLR": lambda o: s.ExponentialLR(o, gamma=0.9),
    "PolynomialLR": lambda o: s.PolynomialLR(o, total_iters=10, power=2.0),
    "CosineAnnealingLR": lambda o: s.CosineAnnealingLR(o, T_max=5),  # stepped well past T_max
    "CosineAnnealingWarmRestarts": lambda o: s.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2),
    "CyclicLR": lambda o: s.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=3),
    "OneCycleLR": lambda o: s.OneCycleLR(o, max_lr=0.1, total_steps=STEPS + 1),
    "SequentialLR": lambda o: s.SequentialLR(
        o, [s.LinearLR(o, start_factor=0.5, total_iters=3), s.ExponentialLR(o, gamma=0.9)], milestones=[6]
    ),
    "ChainedScheduler": lambda o: s.ChainedScheduler(
        [s.ConstantLR(o, factor=0.5, total_iters=5), s.ExponentialLR(o, gamma=0.9)]
    ),
    "ReduceLROnPlateau": lambda o: s.ReduceLROnPlateau(o, factor=0.5, patience=1),
}


def test_every_torch_scheduler_class_is_covered():
    assert set(SCHEDULERS) == {cls.__name__ for cls in policyfreeze.training.schedulers.supported()}


def metric(step: int) -> float:
    """A validation loss that improves, then stalls (ReduceLROnPlateau reduces on the stall)."""
    return max(1.0 - 0.1 * step, 0.6)


def run(
    make_scheduler,
    steps=range(STEPS),
    model=None,
    freezer=None,
    optimizer=None,
    scheduler=None,
    lrs=None,
    policy=POLICY,
):
    """Train ``steps``, recording every group's lr before each optimizer step."""
    if model is None:
        model = tiny()
        freezer = Freezer(model, policy, lr=BASE_LR)
        optimizer = torch.optim.SGD(freezer.param_groups(), momentum=0.9)
        scheduler = make_scheduler(optimizer)
    lrs = [] if lrs is None else lrs
    for step in steps:
        freezer.update(optimizer, step=step, scheduler=scheduler)
        assert policyfreeze.check_optimizer(model, optimizer) == ()
        lrs.append([float(group["lr"]) for group in optimizer.param_groups])
        x = torch.randn(4, 2, generator=torch.Generator().manual_seed(step))  # the same batches when resumed
        optimizer.zero_grad()
        loss = model(x).pow(2).mean()
        if loss.requires_grad:  # a stage may freeze everything for a while
            loss.backward()
        optimizer.step()
        if isinstance(scheduler, s.ReduceLROnPlateau):
            scheduler.step(metric(step))
        else:
            scheduler.step()
    return model, freezer, optimizer, scheduler, lrs


@pytest.mark.parametrize("name", SCHEDULERS)
def test_an_added_group_keeps_the_policys_ratio_at_every_later_step(name):
    _, _, optimizer, scheduler, lrs = run(SCHEDULERS[name])
    assert [len(row) for row in lrs] == [1] * ADDED_AT + [2] * (FROZEN_AT - ADDED_AT) + [3] * (STEPS - FROZEN_AT)
    for step, row in enumerate(lrs):
        base = row[0]
        for added in row[1:]:
            assert math.isclose(added, SCALE * base, rel_tol=1e-9), (step, row)
    # The schedule really moved the rates (the ratio is not trivially kept by constant rates) ...
    assert len({round(row[0], 12) for row in lrs}) > 1
    # ... and every per-group list of the scheduler still has one entry per group.
    assert len(scheduler.get_last_lr()) == len(optimizer.param_groups) == 3


# No group keeps a parameter when layer 0 joins: the head's group loses its only tensor at that stage
# ("swap"), or lost it one stage before ("emptied"). The added group is still measured against the lr the
# policy gave the head, not against a scheduler's initial_lr (OneCycleLR's max_lr/25, CyclicLR's base_lr).
NO_KEPT_REFERENCE = {
    "swap": f"""\
freeze all; unfreeze 3
at step {ADDED_AT} {{ freeze 3; unfreeze 0 with lr_scale={SCALE} }}
""",
    "emptied": f"""\
freeze all; unfreeze 3
at step {ADDED_AT - 2} {{ freeze 3 }}
at step {ADDED_AT} {{ unfreeze 0 with lr_scale={SCALE} }}
""",
}


@pytest.mark.parametrize("case", NO_KEPT_REFERENCE)
@pytest.mark.parametrize("name", SCHEDULERS)
def test_an_added_group_keeps_the_policys_ratio_when_no_group_keeps_a_parameter(name, case):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PolicyWarning)  # "nothing trains" between the stages
        _, _, optimizer, _, lrs = run(SCHEDULERS[name], policy=NO_KEPT_REFERENCE[case])
    assert [len(row) for row in lrs] == [1] * ADDED_AT + [2] * (STEPS - ADDED_AT)
    for step in range(ADDED_AT, STEPS):
        base, added = lrs[step]
        assert math.isclose(added, SCALE * base, rel_tol=1e-9), (step, lrs[step])
    assert optimizer.param_groups[0]["params"] == []


@pytest.mark.parametrize("name", ["LambdaLR", "CosineAnnealingLR", "OneCycleLR", "CyclicLR"])
def test_the_added_group_has_the_rates_it_would_have_had_from_the_start(name):
    """Added at step 4 with lr_scale=0.1, layer 0 gets what a group present from step 0 with 0.1x the
    base rate would have: the schedule's multiplier at that step, not the Freezer's constructor lr."""
    _, _, optimizer, _, lrs = run(SCHEDULERS[name])
    model = tiny()
    reference = torch.optim.SGD(
        [{"params": [model[3].weight], "lr": BASE_LR}, {"params": [model[0].weight], "lr": BASE_LR * SCALE}],
        momentum=0.9,
    )
    if name == "CyclicLR":  # the cyclic bounds of a group present from the start, scaled as the policy says
        scheduler = s.CyclicLR(reference, base_lr=[0.01, 0.001], max_lr=[0.1, 0.01], step_size_up=3)
    elif name == "OneCycleLR":
        scheduler = s.OneCycleLR(reference, max_lr=[0.1, 0.01], total_steps=STEPS + 1)
    else:
        scheduler = SCHEDULERS[name](reference)
    expected = []
    for _ in range(STEPS):
        expected.append([float(group["lr"]) for group in reference.param_groups])
        reference.step()
        scheduler.step()
    for step in range(ADDED_AT, STEPS):
        assert math.isclose(lrs[step][1], expected[step][1], rel_tol=1e-9), step


@pytest.mark.parametrize("name", SCHEDULERS)
def test_two_stage_changes_without_a_step_between_keep_every_list_in_step(name):
    model = tiny()
    freezer = Freezer(model, POLICY, lr=BASE_LR)
    optimizer = torch.optim.SGD(freezer.param_groups(), momentum=0.9)
    scheduler = SCHEDULERS[name](optimizer)
    freezer.update(optimizer, step=ADDED_AT, scheduler=scheduler)
    freezer.update(optimizer, step=FROZEN_AT, scheduler=scheduler)
    assert len(scheduler.get_last_lr()) == len(optimizer.param_groups) == 3
    base, *added = (group["lr"] for group in optimizer.param_groups)
    assert added == pytest.approx([SCALE * base] * 2, rel=1e-12)


def test_without_the_scheduler_the_added_group_starts_at_the_policy_lr_and_a_warning_says_to_pass_it():
    model = tiny()
    freezer = Freezer(model, POLICY, lr=BASE_LR)
    optimizer = torch.optim.SGD(freezer.param_groups())
    scheduler = s.ExponentialLR(optimizer, gamma=0.5)
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    with pytest.warns(PolicyWarning, match="pass it, freezer.update\\(optimizer, ..., scheduler=scheduler\\)"):
        freezer.update(optimizer, step=ADDED_AT)
    assert optimizer.param_groups[1]["lr"] == BASE_LR * SCALE


def test_cosine_with_eta_min_gives_the_added_group_the_schedules_formula():
    eta_min = 0.004
    _, _, optimizer, scheduler, lrs = run(lambda o: s.CosineAnnealingLR(o, T_max=20, eta_min=eta_min))
    for step in range(ADDED_AT, FROZEN_AT):
        base, added = lrs[step]
        # lr = eta_min + (initial - eta_min) * f(t), with the same f(t) for every group
        fraction = (base - eta_min) / (BASE_LR - eta_min)
        assert math.isclose(added, eta_min + (BASE_LR * SCALE - eta_min) * fraction, rel_tol=1e-9), step
    assert scheduler.base_lrs == pytest.approx([BASE_LR, BASE_LR * SCALE, BASE_LR * SCALE])


def test_cosine_with_eta_min_beside_other_schedulers_is_refused():
    def chained(o):
        return s.ChainedScheduler([s.CosineAnnealingLR(o, T_max=20, eta_min=1e-3), s.ExponentialLR(o, gamma=0.9)])

    model = tiny()
    freezer = Freezer(model, POLICY, lr=BASE_LR)
    optimizer = torch.optim.SGD(freezer.param_groups())
    with pytest.raises(PolicyUsageError, match="combined with other schedulers"):
        freezer.update(optimizer, step=ADDED_AT, scheduler=chained(optimizer))
    assert len(optimizer.param_groups) == 1 and not model[0].weight.requires_grad


class HomeMade(s.LRScheduler):
    def get_lr(self):
        return [group["lr"] * 0.5 for group in self.optimizer.param_groups]


class Subclassed(s.StepLR):
    pass


@pytest.mark.parametrize("make", [HomeMade, lambda o: Subclassed(o, step_size=2)], ids=["LRScheduler", "StepLR"])
def test_an_unknown_scheduler_class_is_refused_before_anything_changes(make):
    model = tiny()
    freezer = Freezer(model, POLICY, lr=BASE_LR)
    optimizer = torch.optim.SGD(freezer.param_groups())
    scheduler = make(optimizer)
    with pytest.raises(PolicyUsageError) as info:
        freezer.update(optimizer, step=ADDED_AT, scheduler=scheduler)
    assert f"cannot tell how {type(scheduler).__name__} schedules a parameter group added after it" in str(info.value)
    assert "build the scheduler again after each stage change" in str(info.value)
    assert len(optimizer.param_groups) == 1 and not model[0].weight.requires_grad and freezer.at == 0


def test_a_scheduler_of_another_optimizer_or_out_of_step_is_refused():
    model = tiny()
    freezer = Freezer(model, POLICY, lr=BASE_LR)
    optimizer = torch.optim.SGD(freezer.param_groups())
    other = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(PolicyUsageError, match="drives another optimizer"):
        freezer.update(optimizer, step=ADDED_AT, scheduler=s.StepLR(other, step_size=2))
    scheduler = s.StepLR(optimizer, step_size=2)
    optimizer.add_param_group({"params": [nn.Parameter(torch.zeros(1))]})
    with pytest.raises(PolicyUsageError, match="base_lrs has 1 entries but the optimizer has 2 parameter groups"):
        freezer.update(optimizer, step=ADDED_AT, scheduler=scheduler)


def test_a_fault_applying_the_stage_leaves_the_scheduler_as_it_was(monkeypatch):
    from policyfreeze.engine import commit as applier

    model = tiny()
    freezer = Freezer(model, POLICY, lr=BASE_LR)
    optimizer = torch.optim.SGD(freezer.param_groups())
    scheduler = s.LambdaLR(optimizer, lambda step: 0.9**step)
    before = {key: list(value) for key, value in vars(scheduler).items() if isinstance(value, list)}

    def broken(tensor, flag):
        raise RuntimeError("injected")

    monkeypatch.setattr(applier, "set_requires_grad", broken)
    with pytest.raises(policyfreeze.PolicyError, match="undone"):
        freezer.update(optimizer, step=ADDED_AT, scheduler=scheduler)
    assert {key: list(value) for key, value in vars(scheduler).items() if isinstance(value, list)} == before
    assert len(optimizer.param_groups) == 1


@pytest.mark.parametrize("name", ["LambdaLR", "OneCycleLR", "CyclicLR", "SequentialLR", "ReduceLROnPlateau"])
def test_resume_mid_schedule_is_bit_identical(name):
    """Checkpoint after the group was added, rebuild everything, load, finish: the same bits as one run."""
    make = SCHEDULERS[name]
    model, _, optimizer, scheduler, _ = run(make)
    uninterrupted = ({k: v.clone() for k, v in model.state_dict().items()}, optimizer.state_dict())

    first = run(make, steps=range(ADDED_AT + 2))
    saved = {
        "model": {k: v.clone() for k, v in first[0].state_dict().items()},
        "freezer": first[1].state_dict(),
        "optimizer": first[2].state_dict(),
        "scheduler": first[3].state_dict(),
    }
    model = tiny()
    model.load_state_dict(saved["model"])
    freezer = Freezer(model, POLICY, lr=BASE_LR)
    freezer.load_state_dict(saved["freezer"])
    optimizer = torch.optim.SGD(freezer.param_groups(), momentum=0.9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch: a scheduler built on a resumed optimizer
        scheduler = make(optimizer)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    model, _, optimizer, _, _ = run(make, range(ADDED_AT + 2, STEPS), model, freezer, optimizer, scheduler)
    for key, value in uninterrupted[0].items():
        assert torch.equal(model.state_dict()[key], value), key
    assert optimizer.state_dict()["param_groups"] == uninterrupted[1]["param_groups"]
