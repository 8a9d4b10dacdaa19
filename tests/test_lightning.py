"""``policyfreeze.lightning.FreezePolicyCallback`` in real Lightning fits (CPU, tiny model, a few batches):
the standard ``configure_optimizers`` idioms unchanged, schedulers, bit-identical resume, eval pins through
Lightning's validation loop, a submodule, phases on a plateau of a validation metric, and the usage errors.
DDP is in ``test_lightning_ddp.py``."""

from __future__ import annotations

import math
import subprocess
import sys
import warnings
from collections import OrderedDict
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn

import policyfreeze
from policyfreeze import PolicyUsageError
from policyfreeze.lightning import FreezePolicyCallback
from policyfreeze.training.plateau import Plateau

POLICY = """\
freeze all; unfreeze head
eval type(BatchNorm1d)
at epoch 1 { unfreeze backbone.fc2 with lr_scale=0.5 }
at epoch 2 { unfreeze backbone.fc1, backbone.bn with lr_scale=0.25; train backbone.bn }
"""
PHASES = """\
freeze all; unfreeze head
eval type(BatchNorm1d)
at phase 1 { unfreeze backbone.fc2 with lr_scale=0.5 }
at phase 2 { unfreeze backbone.fc1, backbone.bn; train backbone.bn }
"""
EPOCHS = 4
LR = 0.02


def idiom_all(module: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.AdamW(module.parameters(), lr=LR)


def idiom_trainable(module: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.AdamW(filter(lambda p: p.requires_grad, module.parameters()), lr=LR)


IDIOMS = {"all parameters": idiom_all, "trainable only": idiom_trainable}

#: configure_optimizers' return forms: the optimizer alone, a dict with a per-step scheduler, lists with a per-epoch one.
SCHEDULERS = {
    "none": lambda optimizer: optimizer,
    "dict, LambdaLR per step": lambda optimizer: {
        "optimizer": optimizer,
        "lr_scheduler": {
            "scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.9**step),
            "interval": "step",
        },
    },
    "lists, StepLR per epoch": lambda optimizer: (
        [optimizer],
        [torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)],
    ),
    "dict, CosineAnnealingLR": lambda optimizer: {
        "optimizer": optimizer,
        "lr_scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=EPOCHS),
    },
}


class Net(pl.LightningModule):
    """A user's module as written without policyfreeze: the optimizer idiom and scheduler form are its own."""

    def __init__(self, idiom=idiom_all, schedule=SCHEDULERS["none"]) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.backbone = nn.Sequential(
            OrderedDict(
                fc1=nn.Linear(4, 8), bn=nn.BatchNorm1d(8), relu1=nn.ReLU(), fc2=nn.Linear(8, 8), relu2=nn.ReLU()
            )
        )
        self.head = nn.Linear(8, 3)
        self.idiom = idiom
        self.schedule = schedule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.cross_entropy(self(x), y))

    def configure_optimizers(self):
        return self.schedule(self.idiom(self))


def loader(samples: int, seed: int) -> torch.utils.data.DataLoader:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, 4, generator=generator)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 1).long()
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)


class Probe(pl.Callback):
    """What training sees at every batch: flags, the optimizer's groups, check_optimizer, modes and statistics."""

    def __init__(self, policy_module: str | None = None) -> None:
        self.policy_module = policy_module
        self.batches: list[dict] = []
        self.validation_modes: list[bool] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        optimizer = trainer.optimizers[0]
        names = {id(p): name for name, p in pl_module.named_parameters()}
        self.batches.append(
            {
                "epoch": trainer.current_epoch,
                "flags": {name: p.requires_grad for name, p in pl_module.named_parameters()},
                "problems": policyfreeze.check_optimizer(pl_module, optimizer),
                "groups": [(group["lr"], [names[id(p)] for p in group["params"]]) for group in optimizer.param_groups],
                "bn training": pl_module.backbone.bn.training,
                "bn mean": pl_module.backbone.bn.running_mean.clone(),
            }
        )

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.validation_modes.append(pl_module.backbone.bn.training)


def fit(model: Net, callbacks: list, *, epochs: int = EPOCHS, ckpt_path: str | Path | None = None) -> pl.Trainer:
    """A short real fit on CPU, with a validation loop (Lightning sets eval and restores modes by assignment)."""
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=any(isinstance(callback, ModelCheckpoint) for callback in callbacks),
        num_sanity_val_steps=1,
        callbacks=callbacks,
    )
    with warnings.catch_warnings():
        # Lightning's notes on small loaders and on modules in eval mode at the start (the policy's eval pins).
        warnings.filterwarnings("ignore", message=r".*(eval mode at the start|does not have many workers|LeafSpec)")
        trainer.fit(model, loader(32, 0), loader(16, 1), ckpt_path=ckpt_path)
    return trainer


def names_of(flags: dict[str, bool]) -> set[str]:
    return {name for name, flag in flags.items() if flag}


def expected_flags(epoch: int) -> dict[str, bool]:
    return policyfreeze.resolve(Net(), POLICY, epoch=epoch).requires_grad


def base_lr(groups: list[tuple[float, list[str]]], name: str) -> float:
    return next(lr for lr, names in groups if name in names)


# Idioms and schedulers -------------------------------------------------------------------


@pytest.mark.parametrize("schedule", SCHEDULERS.values(), ids=SCHEDULERS)
@pytest.mark.parametrize("idiom", IDIOMS.values(), ids=IDIOMS)
def test_the_optimizer_follows_the_policy_at_every_batch(idiom, schedule):
    probe = Probe()
    model = Net(idiom, schedule)
    start = {name: p.detach().clone() for name, p in model.named_parameters()}
    fit(model, [FreezePolicyCallback(POLICY, lr=LR), probe])
    assert [batch["epoch"] for batch in probe.batches] == [e for e in range(EPOCHS) for _ in range(4)]
    for batch in probe.batches:
        assert batch["flags"] == expected_flags(batch["epoch"]), batch["epoch"]  # every parameter
        assert batch["problems"] == ()
    groups = probe.batches[-1]["groups"]
    assert [names for _, names in groups if names] == [
        ["head.weight", "head.bias"],
        ["backbone.fc2.weight", "backbone.fc2.bias"],
        ["backbone.fc1.weight", "backbone.fc1.bias", "backbone.bn.weight", "backbone.bn.bias"],
    ]
    for batch in probe.batches:  # discriminative rates keep the policy's ratio to the base rate, on schedule
        groups, epoch = batch["groups"], batch["epoch"]
        if epoch >= 1:
            assert math.isclose(
                base_lr(groups, "backbone.fc2.weight"), 0.5 * base_lr(groups, "head.weight"), rel_tol=1e-9
            )
        if epoch >= 2:
            assert math.isclose(
                base_lr(groups, "backbone.fc1.weight"), 0.25 * base_lr(groups, "head.weight"), rel_tol=1e-9
            )
    end = dict(model.named_parameters())
    for name, value in start.items():
        trained = name in names_of(expected_flags(EPOCHS - 1))
        assert torch.equal(end[name].detach(), value) != trained, name


def test_eval_pins_hold_through_lightnings_validation_loop_and_lift_to_the_parents_mode():
    """Lightning restores modes after validation by assigning ``.training``: the pinned BatchNorm stays in eval
    (its statistics frozen) until ``train backbone.bn``, then follows its parent: training in training, eval in
    validation."""
    probe = Probe()
    fit(Net(), [FreezePolicyCallback(POLICY, lr=LR), probe])
    by_epoch = {e: [batch for batch in probe.batches if batch["epoch"] == e] for e in range(EPOCHS)}
    first_mean = probe.batches[0]["bn mean"]
    for epoch in (0, 1):
        assert all(not batch["bn training"] for batch in by_epoch[epoch])
        assert all(torch.equal(batch["bn mean"], first_mean) for batch in by_epoch[epoch])
    for epoch in (2, 3):
        assert all(batch["bn training"] for batch in by_epoch[epoch])
    assert not torch.equal(by_epoch[3][-1]["bn mean"], first_mean)
    assert probe.validation_modes and not any(probe.validation_modes)


# Resume ------------------------------------------------------------------------------------


def checkpoints(tmp_path: Path) -> ModelCheckpoint:
    return ModelCheckpoint(dirpath=tmp_path, filename="{epoch}", save_top_k=-1, every_n_epochs=1)


@pytest.mark.parametrize("idiom", IDIOMS.values(), ids=IDIOMS)
def test_resuming_a_mid_schedule_checkpoint_is_bit_identical(tmp_path, idiom):
    """Saved after epoch 1 (stage 1 reached, stage 2 ahead), with a per-step scheduler and pinned BatchNorm."""
    schedule = SCHEDULERS["dict, LambdaLR per step"]
    uninterrupted = Net(idiom, schedule)
    fit(uninterrupted, [FreezePolicyCallback(POLICY, lr=LR), checkpoints(tmp_path)])
    probe = Probe()
    resumed = Net(idiom, schedule)
    callback = FreezePolicyCallback(POLICY, lr=LR)
    fit(resumed, [callback, probe], ckpt_path=tmp_path / "epoch=1.ckpt")
    assert probe.batches[0]["epoch"] == 2
    assert all(batch["problems"] == () for batch in probe.batches)
    assert callback.freezer.at == EPOCHS - 1
    for name, value in uninterrupted.state_dict().items():  # parameters and BatchNorm statistics
        assert torch.equal(resumed.state_dict()[name], value), name


def test_a_changed_policy_is_refused_on_resume(tmp_path):
    fit(Net(), [FreezePolicyCallback(POLICY, lr=LR), checkpoints(tmp_path)], epochs=2)
    changed = POLICY.replace("lr_scale=0.25", "lr_scale=0.2")
    model = Net()
    with pytest.raises(PolicyUsageError, match="the policy changed since the checkpoint"):
        fit(model, [FreezePolicyCallback(changed, lr=LR)], ckpt_path=tmp_path / "epoch=1.ckpt")
    with pytest.warns(policyfreeze.PolicyWarning, match="resuming a checkpoint of"):
        fit(
            Net(), [FreezePolicyCallback(changed, lr=LR, allow_policy_change=True)], ckpt_path=tmp_path / "epoch=1.ckpt"
        )


def test_a_checkpoint_saved_without_the_callback_is_refused(tmp_path):
    fit(Net(), [checkpoints(tmp_path)], epochs=1)
    with pytest.raises(PolicyUsageError, match="holds no state of this FreezePolicyCallback"):
        fit(Net(), [FreezePolicyCallback(POLICY, lr=LR)], ckpt_path=tmp_path / "epoch=0.ckpt")


def test_stages_at_steps_change_at_the_batch_where_that_step_begins():
    policy = "freeze all; unfreeze head\nat step 6 { unfreeze backbone.fc2 with lr_scale=0.5 }"
    probe = Probe()
    fit(Net(schedule=SCHEDULERS["dict, LambdaLR per step"]), [FreezePolicyCallback(policy, lr=LR), probe], epochs=3)
    assert [batch["flags"]["backbone.fc2.weight"] for batch in probe.batches] == [False] * 6 + [True] * 6
    assert all(batch["problems"] == () for batch in probe.batches)
    assert math.isclose(probe.batches[-1]["groups"][1][0], 0.5 * probe.batches[-1]["groups"][0][0], rel_tol=1e-9)


# A submodule -----------------------------------------------------------------------------


def test_module_addresses_a_submodule_and_leaves_the_rest_of_the_optimizer_alone():
    policy = "freeze all\neval bn\nat epoch 1 { unfreeze fc2 with lr_scale=0.5 }"
    probe = Probe()
    callback = FreezePolicyCallback(policy, module="backbone", lr=LR)
    fit(Net(), [callback, probe], epochs=2)
    head = {"head.weight", "head.bias"}
    assert [names_of(batch["flags"]) for batch in probe.batches[::4]] == [
        head,
        head | {"backbone.fc2.weight", "backbone.fc2.bias"},
    ]
    assert all(batch["problems"] == () for batch in probe.batches)
    assert callback.freezer.report.plan.tree.param_names[0] == "fc1.weight"  # names relative to the submodule
    with pytest.raises(PolicyUsageError, match="Net has no submodule 'neck'") as info:
        fit(Net(), [FreezePolicyCallback(policy, module="neck", lr=LR)])
    assert info.value.help == "its children are backbone, head"


# Phases on a plateau ---------------------------------------------------------------------------


class RecordPhases(pl.Callback):
    def __init__(self, callback: FreezePolicyCallback) -> None:
        self.callback = callback
        self.phases: list[int] = []
        self.values: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.phases.append(self.callback.freezer.at)

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self.values.append(float(trainer.callback_metrics["val_loss"]))


def test_phases_advance_at_the_epoch_after_the_validation_loss_plateaus():
    """The rule, replayed on the metric the fit logged: a phase starts at the first epoch after a plateau."""
    callback = FreezePolicyCallback(PHASES, lr=LR, monitor="val_loss", patience=1, min_delta=0.04)
    record = RecordPhases(callback)
    fit(Net(), [callback, record], epochs=6)
    plateau, phase, expected = Plateau("min", patience=1, min_delta=0.04), 0, [0]
    for value in record.values[:-1]:
        if plateau.update(value) and phase < 2:
            phase += 1
        expected.append(phase)
    assert record.phases == expected
    assert record.phases[-1] > 0  # the loss did plateau


def test_the_phase_reached_and_a_pending_advance_resume_bit_identically(tmp_path):
    """min_delta above any change: every validation after a phase's first is a plateau (patience 1), so the
    checkpoint after epoch 1 holds phase 0 with the advance to phase 1 pending."""

    def phases() -> FreezePolicyCallback:
        return FreezePolicyCallback(PHASES, lr=LR, monitor="val_loss", patience=1, min_delta=10.0)

    uninterrupted, callback = Net(), phases()
    record = RecordPhases(callback)
    fit(uninterrupted, [callback, record, checkpoints(tmp_path)], epochs=5)
    assert record.phases == [0, 0, 1, 1, 2]
    resumed, callback = Net(), phases()
    record = RecordPhases(callback)
    fit(resumed, [callback, record], epochs=5, ckpt_path=tmp_path / "epoch=1.ckpt")
    assert record.phases == [1, 1, 2]
    for name, value in uninterrupted.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], value), name


def test_a_monitored_metric_validation_does_not_log_is_an_error():
    with pytest.raises(
        PolicyUsageError, match=r"monitors 'val_acc', which validation did not log \(logged: val_loss\)"
    ):
        fit(Net(), [FreezePolicyCallback(PHASES, lr=LR, monitor="val_acc")], epochs=1)


# Usage errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"policy": PHASES, "lr": LR}, "advances by phase, when a monitored metric stops improving: pass monitor="),
        (
            {"policy": POLICY, "lr": LR, "monitor": "val_loss"},
            "monitor= advances `at phase` policies, but <string> schedules by epoch",
        ),
        ({"policy": "freeze head", "monitor": "val_loss"}, "but <string> has no stages"),
        (
            {"policy": PHASES, "lr": LR, "monitor": "val_loss", "patience": -1},
            "patience is an integer 0 or more, not -1",
        ),
        ({"policy": PHASES, "lr": LR, "monitor": "val_loss", "mode": "up"}, "mode is 'min' or 'max', not 'up'"),
        ({"policy": POLICY, "lr": LR, "module": 3}, "module is the dotted name of a submodule"),
        ({"policy": "frieze all"}, "expected"),
        ({"policy": POLICY}, r"'unfreeze backbone.fc2 with lr_scale=0.5' \(<string>:3\) scales the base learning rate"),
    ],
)
def test_bad_arguments_are_refused_when_the_callback_is_made(arguments, message):
    with pytest.raises(policyfreeze.PolicyError, match=message):
        FreezePolicyCallback(arguments.pop("policy"), **arguments)


def test_a_base_lr_other_than_the_optimizers_is_refused():
    with pytest.raises(PolicyUsageError, match=r"FreezePolicyCallback\(lr=0.1\) but configure_optimizers gives"):
        fit(Net(), [FreezePolicyCallback(POLICY, lr=0.1)], epochs=1)


def test_importing_without_lightning_says_which_extra_to_install():
    script = "import sys; sys.modules['lightning'] = None\nimport policyfreeze.lightning\n"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 1
    assert (
        "policyfreeze.errors.PolicyUsageError: policyfreeze.lightning needs lightning, which is not installed"
        in result.stderr
    )
    assert "pip install 'policyfreeze[lightning]'" in result.stderr


class TwoOptimizers(Net):
    """Manual optimization with an optimizer per part (a GAN's pattern): which one the policy drives is unclear."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        for optimizer in self.optimizers():
            optimizer.zero_grad()
        x, y = batch
        self.manual_backward(nn.functional.cross_entropy(self(x), y))
        for optimizer in self.optimizers():
            optimizer.step()

    def configure_optimizers(self):
        return [torch.optim.AdamW(self.backbone.parameters(), lr=LR), torch.optim.AdamW(self.head.parameters(), lr=LR)]


def test_more_than_one_optimizer_is_refused():
    with pytest.raises(PolicyUsageError, match="drives one optimizer, but configure_optimizers returned 2"):
        fit(TwoOptimizers(), [FreezePolicyCallback(POLICY, lr=LR)], epochs=1)
