"""Hugging Face Trainer: ``FreezePolicyCallback`` drives a freeze policy through ``Trainer.train``.

::

    trainer = Trainer(model, args, train_dataset=..., callbacks=[FreezePolicyCallback(Path("examples/bert-gradual-unfreezing.freeze"))])

The Trainer is built as usual, with its own optimizer and LR scheduler. The
callback applies the policy when the Trainer is made, so the Trainer's
optimizer holds the policy's trainable parameters in its usual groups (no
weight decay for biases and norms, ``Trainer.get_decay_parameter_names``);
it changes stages at epoch (or step) starts, the added groups following the
scheduler (every Trainer scheduler is a ``LambdaLR``); it advances
``at phase`` policies when an evaluation metric plateaus; and it keeps its
state in each checkpoint folder (``policyfreeze.json`` beside
``trainer_state.json``), so ``train(resume_from_checkpoint=...)`` continues
bit for bit.

On resume the Trainer builds a fresh optimizer and loads the saved state
into it, which only fits the groups laid out as the saved run had them. No
callback event falls between the two, so the callback finds the Trainer
that made it (in ``on_init_end``) and has it align the optimizer and
scheduler to the saved stage just before it loads their state.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import os
from pathlib import Path
from typing import Any, Literal

from .engine.resolve import coerce_policy
from .errors import PolicyUsageError, needs_extras
from .language.policy import Policy
from .training.freezer import Freezer
from .training.plateau import Plateau, plateau_for

with needs_extras("policyfreeze.transformers"):
    import transformers
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

__all__ = ["STATE_FILE", "FreezePolicyCallback"]

#: The callback's state in each checkpoint folder, beside trainer_state.json.
STATE_FILE = "policyfreeze.json"
_STATE_KEYS = {"freezer", "plateau", "advance_pending"}


class FreezePolicyCallback(transformers.TrainerCallback):
    """Apply ``policy`` to the Trainer's model (or its submodule ``module``) and drive its stages through training.

    ``policy`` is a ``Policy``, policy text or a ``pathlib.Path``. Pass the
    callback when making the Trainer, ``Trainer(..., callbacks=[...])``.
    Parameter names are relative to the model, or to ``module`` (a dotted
    name such as ``"bert.encoder"``) when given. The base learning rate
    ``lr_scale`` multiplies and the base weight decay are the Trainer's
    (``learning_rate``, ``weight_decay``); biases and norms get no weight
    decay unless a statement's ``with weight_decay=`` says otherwise.

    ``at epoch N`` stages change when epoch N starts, ``at step N`` stages
    when optimizer step N starts (``state.global_step == N``). An
    ``at phase N`` policy needs ``monitor``, an evaluation metric such as
    ``"eval_loss"``: when it has not improved by more than ``min_delta``
    (``mode`` ``"min"`` or ``"max"``) for ``patience`` evaluations in a row,
    the next phase starts at the next optimizer step. A checkpoint made
    under another policy is refused on resume unless ``allow_policy_change``.
    """

    def __init__(
        self,
        policy: Policy | str | Path,
        *,
        module: str | None = None,
        monitor: str | None = None,
        mode: Literal["min", "max"] = "min",
        patience: int = 3,
        min_delta: float = 0.0,
        allow_policy_change: bool = False,
    ) -> None:
        self.policy = coerce_policy(policy)
        if module is not None and not isinstance(module, str):
            raise PolicyUsageError(f"module is the dotted name of a submodule, such as 'bert.encoder', not {module!r}")
        self.module = module
        self.monitor = monitor
        self.allow_policy_change = allow_policy_change
        self._plateau = plateau_for(self.policy, monitor, mode, patience, min_delta)
        self._freezer: Freezer | None = None
        self._model: Any = None
        self._advance_pending = False
        self._aligned: Any = None

    @property
    def freezer(self) -> Freezer:
        """The ``Freezer`` driving the policy (made with the Trainer)."""
        if self._freezer is None:
            raise PolicyUsageError(
                "FreezePolicyCallback has no Freezer: pass it when making the Trainer, Trainer(..., callbacks=[...])"
            )
        return self._freezer

    # Setting up -----------------------------------------------------------------

    def on_init_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if self._freezer is not None:
            raise PolicyUsageError("this FreezePolicyCallback already drives another Trainer: make one per Trainer")
        trainer = _trainer_making(self)
        target = self._target(model)
        param_options = None
        lr, weight_decay = args.learning_rate, args.weight_decay
        if trainer.optimizer is None:
            # The Trainer's own optimizer: its no-weight-decay grouping, under the policy's own options.
            prefix = f"{self.module}." if self.module else ""
            decay = frozenset(trainer.get_decay_parameter_names(model))
            param_options = functools.partial(_no_decay_unless_listed, decay, prefix)
        else:
            # An optimizer passed in Trainer(optimizers=...): its own lr and grouping stand.
            lr, weight_decay = trainer.optimizer.defaults.get("lr"), None
        self._freezer = Freezer(target, self.policy, lr=lr, weight_decay=weight_decay, param_options=param_options)
        self._model = model
        _align_before_loading(trainer, self)

    def _target(self, model: Any) -> Any:
        if self.module is None:
            return model
        try:
            return model.get_submodule(self.module)
        except AttributeError:
            names = [name for name, _ in model.named_children()]
            raise PolicyUsageError(
                f"{type(model).__name__} has no submodule {self.module!r}",
                help=f"its children are {', '.join(names) or 'none'}",
            ) from None

    def _resume(self, checkpoint: str | os.PathLike, optimizer: Any, scheduler: Any) -> None:
        """Restore the state saved in ``checkpoint`` and lay ``optimizer`` (and ``scheduler``) out as saved.

        The Trainer calls it (through the hook ``on_init_end`` installs) after
        building its optimizer and scheduler and before loading their state.
        """
        path = Path(checkpoint) / STATE_FILE
        if not path.is_file():
            raise PolicyUsageError(
                f"{checkpoint} has no {STATE_FILE}: the checkpoint was saved without FreezePolicyCallback, so the "
                "stage it reached is unknown",
                help="resume with the callback the run was saved with",
            )
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PolicyUsageError(f"cannot read {path}: {exc}") from None
        self._load(saved)
        self._align(self.freezer, optimizer, scheduler)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        freezer = self.freezer  # a usage error when the callback was added after the Trainer was made
        if kwargs.get("model") is not self._model:
            raise PolicyUsageError(
                "the Trainer trains another model than the one FreezePolicyCallback applied the policy to "
                "(Trainer(model_init=...) builds a new one for each run)",
                help="pass the model itself, Trainer(model=...)",
            )
        self._align(freezer, kwargs["optimizer"], kwargs["lr_scheduler"])

    def _align(self, freezer: Freezer, optimizer: Any, scheduler: Any) -> None:
        """Lay the optimizer the Trainer built out as the policy's (once per optimizer: align is not idempotent)."""
        if optimizer is not self._aligned:
            freezer.align(optimizer, scheduler=scheduler)
            self._aligned = optimizer

    # Stage boundaries ---------------------------------------------------------------

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.freezer.unit == "epoch":
            # At an epoch start state.epoch is the epoch about to run (a fraction only inside a resumed epoch).
            epoch = math.floor(state.epoch or 0)
            self.freezer.update(kwargs["optimizer"], epoch=epoch, scheduler=kwargs["lr_scheduler"])

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        freezer = self.freezer
        if freezer.unit == "step":
            freezer.update(kwargs["optimizer"], step=state.global_step, scheduler=kwargs["lr_scheduler"])
        elif self._advance_pending:
            freezer.advance(kwargs["optimizer"], scheduler=kwargs["lr_scheduler"])
            self._advance_pending = False

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None, **kwargs: Any) -> None:
        if self._plateau is None or self._freezer is None:
            return
        metrics = metrics or {}
        if self.monitor not in metrics:
            raise PolicyUsageError(
                f"FreezePolicyCallback monitors {self.monitor!r}, which the evaluation did not report "
                f"(reported: {', '.join(sorted(metrics)) or 'none'})",
                help="the Trainer prefixes evaluation metrics with 'eval_': monitor='eval_loss', for instance",
            )
        if self._plateau.update(float(metrics[self.monitor])) and self._freezer.next_stage is not None:
            self._advance_pending = True

    # Checkpoints ----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The callback's state: the Freezer's, the plateau test's, and whether a phase is about to start."""
        return {
            "freezer": self.freezer.state_dict(),
            "plateau": None if self._plateau is None else self._plateau.state_dict(),
            "advance_pending": self._advance_pending,
        }

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not args.should_save:
            return
        folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        if not folder.is_dir():
            raise PolicyUsageError(
                f"FreezePolicyCallback cannot find the checkpoint just saved: {folder} is not a folder"
            )
        (folder / STATE_FILE).write_text(json.dumps(self.state_dict(), indent=1) + "\n", encoding="utf-8")

    def _load(self, saved: Any) -> None:
        if not isinstance(saved, dict) or set(saved) != _STATE_KEYS:
            raise PolicyUsageError(f"not a FreezePolicyCallback state: {STATE_FILE} holds something else")
        plateau, pending = saved["plateau"], saved["advance_pending"]
        if not isinstance(pending, bool):
            raise PolicyUsageError(f"not a FreezePolicyCallback state: 'advance_pending' is {pending!r}")
        if (plateau is None) != (self._plateau is None):
            raise PolicyUsageError(
                "the checkpoint's FreezePolicyCallback state was saved "
                f"{'without' if plateau is None else 'with'} monitor=, this callback runs "
                f"{'without' if self._plateau is None else 'with'} it"
            )
        # Everything is checked before the model changes: the plateau settings, then the Freezer's own state.
        if self._plateau is not None:
            Plateau(
                self._plateau.mode, patience=self._plateau.patience, min_delta=self._plateau.min_delta
            ).load_state_dict(plateau)
        self.freezer.load_state_dict(saved["freezer"], allow_policy_change=self.allow_policy_change)
        if self._plateau is not None:
            self._plateau.load_state_dict(plateau)
        self._advance_pending = pending


def _no_decay_unless_listed(decay: frozenset[str], prefix: str, name: str) -> dict[str, float]:
    """The Trainer's grouping: weight decay only for the parameters ``get_decay_parameter_names`` lists."""
    return {} if prefix + name in decay else {"weight_decay": 0.0}


def _trainer_making(callback: FreezePolicyCallback) -> Any:
    """The Trainer whose ``__init__`` is calling ``callback.on_init_end`` (it passes no reference to itself)."""
    frame = inspect.currentframe()
    try:
        while frame is not None:
            candidate = frame.f_locals.get("self")
            if isinstance(candidate, transformers.Trainer) and any(
                registered is callback for registered in candidate.callback_handler.callbacks
            ):
                return candidate
            frame = frame.f_back
    finally:
        del frame
    raise PolicyUsageError(
        "FreezePolicyCallback.on_init_end was not called by a Trainer being made",
        help="pass the callback when making the Trainer: Trainer(..., callbacks=[FreezePolicyCallback(policy)])",
    )


def _align_before_loading(trainer: Any, callback: FreezePolicyCallback) -> None:
    """Have ``trainer`` restore the callback's state, and lay the optimizer out, before it loads a checkpoint's
    optimizer and scheduler state (``Trainer._load_optimizer_and_scheduler``, after both are built)."""
    load = trainer._load_optimizer_and_scheduler

    @functools.wraps(load)
    def load_optimizer_and_scheduler(checkpoint: Any) -> Any:
        if checkpoint is not None:
            callback._resume(checkpoint, trainer.optimizer, trainer.lr_scheduler)
        return load(checkpoint)

    trainer._load_optimizer_and_scheduler = load_optimizer_and_scheduler
