"""``policyfreeze.transformers.FreezePolicyCallback`` in real Hugging Face Trainer runs (CPU, a tiny BERT from a
config, synthetic data): the Trainer's own optimizer and schedulers, its no-weight-decay grouping, stages at
epoch and step starts, bit-identical ``resume_from_checkpoint``, a changed policy refused, phases on a plateau of
an evaluation metric."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainerCallback, TrainingArguments

import policyfreeze
from policyfreeze import PolicyUsageError
from policyfreeze.transformers import STATE_FILE, FreezePolicyCallback

POLICY = """\
freeze all; unfreeze classifier, bert.pooler
at epoch 1 { unfreeze bert.encoder.layer.1 with lr_scale=0.5 }
at epoch 2 { unfreeze bert.encoder.layer.0 with lr_scale=0.25; unfreeze bert.encoder.layer.0.output with weight_decay=0.1 }
"""
PHASES = """\
freeze all; unfreeze classifier, bert.pooler
at phase 1 { unfreeze bert.encoder.layer.1 with lr_scale=0.5 }
at phase 2 { unfreeze bert.encoder.layer.0 }
"""
EPOCHS = 4
STEPS_PER_EPOCH = 2


class Sentences(torch.utils.data.Dataset):
    """Token ids whose label is whether the first token is in the upper half of the vocabulary."""

    def __init__(self, samples: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, 50, (samples, 8), generator=generator)
        self.labels = (self.ids[:, 0] >= 25).long()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[index], "labels": self.labels[index]}


def tiny_bert() -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=50,
        hidden_size=8,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=16,
        num_labels=2,
    )
    return BertForSequenceClassification(config)


class Probe(TrainerCallback):
    """What each optimizer step sees (called after the policy callback): flags, groups, check_optimizer."""

    def __init__(self) -> None:
        self.steps: list[dict] = []

    def on_step_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        names = {id(p): name for name, p in model.named_parameters()}
        self.steps.append(
            {
                "epoch": math.floor(state.epoch or 0),
                "step": state.global_step,
                "flags": {name: p.requires_grad for name, p in model.named_parameters()},
                "problems": policyfreeze.check_optimizer(model, optimizer),
                "groups": [
                    (group["lr"], group["weight_decay"], [names[id(p)] for p in group["params"]])
                    for group in optimizer.param_groups
                ],
            }
        )


def arguments(output_dir: Path, **options) -> TrainingArguments:
    settings = {
        "num_train_epochs": EPOCHS,
        "per_device_train_batch_size": 8,
        "learning_rate": 1e-3,
        "weight_decay": 0.01,
        "lr_scheduler_type": "linear",
        "warmup_steps": 2,
        "save_strategy": "epoch",
        "report_to": [],
        "use_cpu": True,
        "dataloader_num_workers": 0,
        "seed": 0,
        "logging_strategy": "no",
        "disable_tqdm": True,
        **options,
    }
    return TrainingArguments(output_dir=str(output_dir), **settings)


def train(
    output_dir: Path, callbacks: list, *, resume: Path | None = None, evaluate: bool = False, **options
) -> BertForSequenceClassification:
    model = tiny_bert()
    if evaluate:
        options = {"eval_strategy": "epoch", **options}
    trainer = Trainer(
        model=model,
        args=arguments(output_dir, **options),
        train_dataset=Sentences(8 * STEPS_PER_EPOCH, seed=0),
        eval_dataset=Sentences(16, seed=1) if evaluate else None,
        callbacks=callbacks,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(pin_memory|torch.utils.checkpoint)")
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    return model


def no_decay_names(model: BertForSequenceClassification, output_dir: Path) -> set[str]:
    """The names the Trainer exempts from weight decay; the Trainer asked makes ``output_dir``: a test's own."""
    decay = set(Trainer(model=model, args=arguments(output_dir)).get_decay_parameter_names(model))
    return {name for name, _ in model.named_parameters()} - decay


def equal_models(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for name, value in a.state_dict().items():
        assert torch.equal(b.state_dict()[name], value), name


# The Trainer's optimizer and schedulers ------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Uninterrupted runs of every epoch, one per scheduler, checkpointed after each epoch, with a probe at
    every step: (output folder, model, probe)."""
    made: dict[str, tuple[Path, BertForSequenceClassification, Probe]] = {}

    def run(scheduler: str) -> tuple[Path, BertForSequenceClassification, Probe]:
        if scheduler not in made:
            output_dir = tmp_path_factory.mktemp(f"run-{scheduler}")
            probe = Probe()
            model = train(output_dir, [FreezePolicyCallback(POLICY), probe], lr_scheduler_type=scheduler)
            made[scheduler] = output_dir, model, probe
        return made[scheduler]

    return run


SCHEDULER_TYPES = ["linear", "cosine"]


@pytest.mark.parametrize("scheduler", SCHEDULER_TYPES)
def test_every_step_trains_what_the_policy_says_in_the_trainers_groups(runs, scheduler, tmp_path):
    _, model, probe = runs(scheduler)
    no_decay = no_decay_names(model, tmp_path)
    assert [step["step"] for step in probe.steps] == list(range(EPOCHS * STEPS_PER_EPOCH))
    for step in probe.steps:
        assert step["flags"] == policyfreeze.resolve(tiny_bert(), POLICY, epoch=step["epoch"]).requires_grad
        assert step["problems"] == ()
        base = step["groups"][0][0]
        for lr, weight_decay, names in step["groups"]:
            if not names:
                continue
            # layer.0.output is decided by the statement that sets its weight decay: no lr_scale, the base rate.
            scale = {"bert.encoder.layer.0.output.": 1.0, "bert.encoder.layer.0.": 0.25, "bert.encoder.layer.1.": 0.5}
            scale = next((v for prefix, v in scale.items() if names[0].startswith(prefix)), 1.0)
            assert math.isclose(lr, scale * base, rel_tol=1e-9), (step["step"], names)
            # The Trainer's grouping (no decay for biases and norms) unless a statement sets weight_decay.
            if names[0].startswith("bert.encoder.layer.0.output."):
                assert weight_decay == 0.1
            else:
                assert {name in no_decay for name in names} == {weight_decay == 0.0}, names
    first, last = probe.steps[0]["groups"], probe.steps[-1]["groups"]
    assert [len(names) for *_, names in first] == [2, 2]  # pooler and classifier: weights, then biases
    assert len(last) == 2 + 2 + 3  # epoch 2 splits layer.0 three ways: decay, no decay, output's own
    assert all(lr > 0 for lr, *_ in last)


@pytest.mark.parametrize("scheduler", SCHEDULER_TYPES)
def test_resume_from_a_mid_schedule_checkpoint_is_bit_identical(runs, scheduler, tmp_path):
    output_dir, model, probe = runs(scheduler)
    resumed_probe = Probe()
    resumed = train(
        tmp_path,
        [FreezePolicyCallback(POLICY), resumed_probe],
        resume=output_dir / f"checkpoint-{2 * STEPS_PER_EPOCH}",  # stage 2 reached at epoch 2, stage 3 ahead
        lr_scheduler_type=scheduler,
    )
    assert resumed_probe.steps == probe.steps[2 * STEPS_PER_EPOCH :]
    equal_models(model, resumed)


def test_the_checkpoint_folder_holds_the_callbacks_state(runs):
    output_dir, _, _ = runs("linear")
    saved = json.loads((output_dir / f"checkpoint-{STEPS_PER_EPOCH}" / STATE_FILE).read_text())
    assert saved["freezer"]["at"] == 0 and saved["plateau"] is None and saved["advance_pending"] is False
    assert json.loads((output_dir / f"checkpoint-{2 * STEPS_PER_EPOCH}" / STATE_FILE).read_text())["freezer"]["at"] == 1


def test_a_changed_policy_is_refused_on_resume(runs, tmp_path):
    output_dir, _, _ = runs("linear")
    checkpoint = output_dir / f"checkpoint-{STEPS_PER_EPOCH}"
    changed = POLICY.replace("lr_scale=0.25", "lr_scale=0.2")
    with pytest.raises(PolicyUsageError, match="the policy changed since the checkpoint"):
        train(tmp_path / "a", [FreezePolicyCallback(changed)], resume=checkpoint)
    with pytest.warns(policyfreeze.PolicyWarning, match="resuming a checkpoint of"):
        train(
            tmp_path / "b",
            [FreezePolicyCallback(changed, allow_policy_change=True)],
            resume=checkpoint,
            num_train_epochs=2,
        )


def test_a_checkpoint_without_the_callbacks_state_is_refused(runs, tmp_path):
    output_dir, _, _ = runs("linear")
    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(output_dir / f"checkpoint-{STEPS_PER_EPOCH}", checkpoint)
    (checkpoint / STATE_FILE).unlink()
    with pytest.raises(PolicyUsageError, match=f"has no {STATE_FILE}: the checkpoint was saved without"):
        train(tmp_path / "out", [FreezePolicyCallback(POLICY)], resume=checkpoint)


def test_stages_at_steps_change_when_that_optimizer_step_starts(tmp_path):
    probe = Probe()
    policy = "freeze all; unfreeze classifier\nat step 3 { unfreeze bert.pooler with lr_scale=0.5 }"
    train(tmp_path, [FreezePolicyCallback(policy), probe], save_strategy="no")
    pooler = [step["flags"]["bert.pooler.dense.weight"] for step in probe.steps]
    assert pooler == [False] * 3 + [True] * 5
    assert all(step["problems"] == () for step in probe.steps)


def test_a_submodule_names_parameters_relative_to_it(tmp_path):
    probe = Probe()
    policy = "freeze all\nat epoch 1 { unfreeze layer.1 }"
    callback = FreezePolicyCallback(policy, module="bert.encoder")
    train(tmp_path, [callback, probe], num_train_epochs=2, save_strategy="no")
    names = {name for name, _ in tiny_bert().named_parameters()}
    outside = {name for name in names if not name.startswith("bert.encoder.")}  # left alone: they train
    layer_1 = {name for name in names if name.startswith("bert.encoder.layer.1.")}
    trainable = [{name for name, flag in step["flags"].items() if flag} for step in probe.steps[::STEPS_PER_EPOCH]]
    assert trainable == [outside, outside | layer_1]
    assert all(step["problems"] == () for step in probe.steps)
    no_decay = no_decay_names(tiny_bert(), tmp_path / "names")
    for _, weight_decay, group in probe.steps[-1]["groups"]:  # the Trainer's grouping, names made whole
        assert {name in no_decay for name in group} == {weight_decay == 0.0}, group
    assert callback.freezer.report.plan.tree.param_names[0] == "layer.0.attention.self.query.weight"


def test_an_optimizer_passed_to_the_trainer_keeps_its_own_rate_and_groups(tmp_path):
    """Trainer(optimizers=(optimizer, None)): the policy's lr_scale multiplies that optimizer's lr."""
    model = tiny_bert()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    probe = Probe()
    trainer = Trainer(
        model=model,
        args=arguments(tmp_path, num_train_epochs=2, save_strategy="no", lr_scheduler_type="constant"),
        train_dataset=Sentences(8 * STEPS_PER_EPOCH, seed=0),
        optimizers=(optimizer, None),
        callbacks=[FreezePolicyCallback(POLICY), probe],
    )
    trainer.train()
    assert all(step["problems"] == () for step in probe.steps)
    assert [(lr, weight_decay) for lr, weight_decay, names in probe.steps[-1]["groups"]] == [(2e-3, 0.0), (1e-3, 0.0)]


# Phases on a plateau --------------------------------------------------------------------------------


class RecordPhases(TrainerCallback):
    def __init__(self, callback: FreezePolicyCallback) -> None:
        self.callback = callback
        self.phases: list[int] = []
        self.values: list[float] = []

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step % STEPS_PER_EPOCH == 0:  # each epoch's first step, after any advance
            self.phases.append(self.callback.freezer.at)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.values.append(metrics["eval_loss"])


def test_phases_advance_when_the_evaluation_loss_plateaus_and_resume_bit_identically(tmp_path):
    """min_delta above any change: every evaluation after a phase's first is a plateau (patience 1); the
    next phase starts with the next optimizer step, so the checkpoint after epoch 1 holds the advance pending."""

    def phases() -> FreezePolicyCallback:
        return FreezePolicyCallback(PHASES, monitor="eval_loss", patience=1, min_delta=10.0)

    callback = phases()
    record = RecordPhases(callback)
    model = train(tmp_path / "run", [callback, record], evaluate=True, num_train_epochs=5)
    assert record.phases == [0, 0, 1, 1, 2]
    state = json.loads((tmp_path / "run" / f"checkpoint-{2 * STEPS_PER_EPOCH}" / STATE_FILE).read_text())
    assert state["advance_pending"] is True and state["freezer"]["at"] == 0
    resumed_callback = phases()
    resumed = train(
        tmp_path / "resumed",
        [resumed_callback, RecordPhases(resumed_callback)],
        evaluate=True,
        num_train_epochs=5,
        resume=tmp_path / "run" / f"checkpoint-{2 * STEPS_PER_EPOCH}",
    )
    assert resumed_callback.freezer.at == 2
    equal_models(model, resumed)


def test_a_monitored_metric_the_evaluation_does_not_report_is_an_error(tmp_path):
    with pytest.raises(PolicyUsageError, match=r"monitors 'val_loss', which the evaluation did not report"):
        train(tmp_path, [FreezePolicyCallback(PHASES, monitor="val_loss")], evaluate=True, num_train_epochs=1)


# Usage errors ------------------------------------------------------------------------------------------


def test_the_callback_needs_the_trainer_that_makes_it(tmp_path):
    callback = FreezePolicyCallback(POLICY)
    with pytest.raises(PolicyUsageError, match="pass it when making the Trainer"):
        callback.state_dict()
    trainer = Trainer(model=tiny_bert(), args=arguments(tmp_path), train_dataset=Sentences(8, seed=0))
    trainer.add_callback(callback)  # after the Trainer was made: on_init_end never ran
    with pytest.raises(PolicyUsageError, match="pass it when making the Trainer"):
        trainer.train()
    Trainer(model=tiny_bert(), args=arguments(tmp_path), callbacks=[callback])
    with pytest.raises(PolicyUsageError, match="already drives another Trainer"):
        Trainer(model=tiny_bert(), args=arguments(tmp_path), callbacks=[callback])


def test_importing_without_transformers_says_which_extra_to_install():
    script = "import sys; sys.modules['transformers'] = None\nimport policyfreeze.transformers\n"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 1
    assert (
        "policyfreeze.errors.PolicyUsageError: policyfreeze.transformers needs transformers, which is not installed"
        in result.stderr
    )
    assert "pip install 'policyfreeze[hf]'" in result.stderr
