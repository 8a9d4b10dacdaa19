"""Lightning: ``FreezePolicyCallback`` drives a freeze policy through ``Trainer.fit``.

::

    trainer = lightning.pytorch.Trainer(callbacks=[FreezePolicyCallback(Path("policies/resnet-gradual-unfreezing.freeze"), lr=1e-3)])

The LightningModule stays as it is: ``configure_optimizers`` may return
``AdamW(self.parameters())`` or only the trainable ones, with or without an
LR scheduler. The callback applies the policy before the optimizer is built
and before DDP wraps the model (``setup``), brings the optimizer Lightning
built in line with it (``on_fit_start``, ``Freezer.align``), changes stages
at train-epoch (or train-batch) starts, advances ``at phase`` policies when
a monitored metric plateaus, rebuilds Lightning's DistributedDataParallel
after a stage that changes what trains, and keeps its state in Lightning's
checkpoints so a resumed fit continues bit for bit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from .engine.resolve import coerce_policy
from .errors import PolicyUsageError, needs_extras
from .language.policy import Policy
from .training import distributed
from .training.freezer import Freezer, StageChange
from .training.plateau import Plateau, plateau_for

with needs_extras("policyfreeze.lightning"):
    import lightning.pytorch as pl
    from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy

__all__ = ["FreezePolicyCallback"]

_STATE_KEYS = {"freezer", "plateau", "advance_pending"}


class FreezePolicyCallback(pl.Callback):
    """Apply ``policy`` to the LightningModule (or its submodule ``module``) and drive its stages through ``fit``.

    ``policy`` is a ``Policy``, policy text or a ``pathlib.Path``. Parameter
    names are relative to the LightningModule, or to ``module`` (a dotted
    attribute path such as ``"backbone"``) when given; the optimizer's other
    parameters are left alone. ``lr`` is the base learning rate ``lr_scale``
    multiplies: the one ``configure_optimizers`` gives the optimizer (needed
    only when the policy scales it; checked against the optimizer).

    ``at epoch N`` stages change at the start of training epoch N
    (``trainer.current_epoch``), ``at step N`` stages at the start of the
    batch with ``trainer.global_step == N``. An ``at phase N`` policy needs
    ``monitor``, a metric the LightningModule logs during validation: when it
    has not improved by more than ``min_delta`` (``mode`` ``"min"`` or
    ``"max"``) for ``patience`` validations in a row, the next phase starts
    at the next training epoch. A checkpoint made under another policy is
    refused on resume unless ``allow_policy_change``.
    """

    def __init__(
        self,
        policy: Policy | str | Path,
        *,
        module: str | None = None,
        lr: float | None = None,
        monitor: str | None = None,
        mode: Literal["min", "max"] = "min",
        patience: int = 3,
        min_delta: float = 0.0,
        allow_policy_change: bool = False,
    ) -> None:
        self.policy = coerce_policy(policy)
        if module is not None and not isinstance(module, str):
            raise PolicyUsageError(f"module is the dotted name of a submodule, such as 'backbone', not {module!r}")
        self.module = module
        if lr is None:
            _require_lr(self.policy)
        self.lr = lr
        self.monitor = monitor
        self.allow_policy_change = allow_policy_change
        self._plateau = plateau_for(self.policy, monitor, mode, patience, min_delta)
        self._freezer: Freezer | None = None
        self._advance_pending = False
        self._restored = False

    @property
    def freezer(self) -> Freezer:
        """The ``Freezer`` driving the policy (made when ``fit`` sets up)."""
        if self._freezer is None:
            raise PolicyUsageError("the callback has no Freezer before Trainer.fit sets it up")
        return self._freezer

    @property
    def state_key(self) -> str:
        # One state per addressed module: a renamed policy file still finds its checkpoint state.
        return self._generate_state_key(module=self.module)

    # Setting up ---------------------------------------------------------------

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        strategy = trainer.strategy
        if type(strategy) not in (SingleDeviceStrategy, DDPStrategy) or strategy.restore_checkpoint_after_setup:
            raise PolicyUsageError(
                f"FreezePolicyCallback supports Lightning's single-device and DDP strategies, not "
                f"{type(strategy).__name__}",
                help="use strategy='auto' on one device, or strategy='ddp' on several",
            )
        # A Freezer per fit: configure_optimizers builds a new optimizer each time, aligned from stage 0.
        self._freezer = Freezer(self._target(pl_module), self.policy, lr=self.lr, wrap=False)
        self._advance_pending = False
        self._restored = False
        if self._plateau is not None:
            self._plateau.reset()

    def _target(self, pl_module: pl.LightningModule) -> Any:
        if self.module is None:
            return pl_module
        try:
            return pl_module.get_submodule(self.module)
        except AttributeError:
            names = [name for name, _ in pl_module.named_children()]
            raise PolicyUsageError(
                f"{type(pl_module).__name__} has no submodule {self.module!r}",
                help=f"its children are {', '.join(names) or 'none'}",
            ) from None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        freezer = self.freezer
        if trainer.ckpt_path is not None and not self._restored:
            raise PolicyUsageError(
                f"the checkpoint {trainer.ckpt_path} holds no state of this FreezePolicyCallback (state key "
                f"{self.state_key!r}): it was saved without it, or with another module=, so the stage it reached "
                "is unknown",
                help="resume with the callback the run was saved with",
            )
        optimizer = self._optimizer(trainer)
        if self.lr is not None and optimizer.defaults.get("lr") != self.lr:
            raise PolicyUsageError(
                f"FreezePolicyCallback(lr={self.lr:g}) but configure_optimizers gives the optimizer "
                f"lr={optimizer.defaults.get('lr')}: lr_scale would scale another rate than the one training uses",
                help="pass the learning rate configure_optimizers uses",
            )
        # Lays the groups out as the saved run had them: Lightning loads the optimizer's state after this hook.
        freezer.align(optimizer, scheduler=self._schedulers(trainer, optimizer))

    # Stage boundaries -----------------------------------------------------------

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        freezer = self.freezer
        optimizer = self._optimizer(trainer)
        schedulers = self._schedulers(trainer, optimizer)
        change: StageChange | None = None
        if freezer.unit == "epoch":
            change = freezer.update(optimizer, epoch=trainer.current_epoch, scheduler=schedulers)
        elif freezer.unit == "phase" and self._advance_pending:
            change = freezer.advance(optimizer, scheduler=schedulers)
            self._advance_pending = False
        self._after(trainer, change)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        freezer = self.freezer
        if freezer.unit == "step":
            optimizer = self._optimizer(trainer)
            change = freezer.update(optimizer, step=trainer.global_step, scheduler=self._schedulers(trainer, optimizer))
            self._after(trainer, change)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        monitor = self.monitor
        fitting = trainer.state.fn == "fit" and not trainer.sanity_checking  # not trainer.validate() either
        if monitor is None or self._plateau is None or not fitting or self._freezer is None:
            return
        value = trainer.callback_metrics.get(monitor)
        if value is None:
            logged = ", ".join(sorted(trainer.callback_metrics)) or "none"
            raise PolicyUsageError(
                f"FreezePolicyCallback monitors {monitor!r}, which validation did not log (logged: {logged})",
                help=f"log it in validation_step, self.log({monitor!r}, value), or monitor one of those",
            )
        plateau = self._plateau.update(float(value))
        # Every rank must advance together (DDP): one rank's plateau is everyone's, as EarlyStopping decides.
        plateau = trainer.strategy.reduce_boolean_decision(plateau, all=False)
        if plateau and self._freezer.next_stage is not None:
            self._advance_pending = True

    def _after(self, trainer: pl.Trainer, change: StageChange | None) -> None:
        if change is not None and change.trainable_changed:
            _rewrap(trainer.strategy)

    # Checkpoints ------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        if self._freezer is None:
            return {}
        return {
            "freezer": self._freezer.state_dict(),
            "plateau": None if self._plateau is None else self._plateau.state_dict(),
            "advance_pending": self._advance_pending,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not isinstance(state_dict, dict) or set(state_dict) != _STATE_KEYS:
            raise PolicyUsageError(
                "the checkpoint's FreezePolicyCallback state is not one this callback saved "
                f"(keys {sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict).__name__})"
            )
        plateau, pending = state_dict["plateau"], state_dict["advance_pending"]
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
            saved = Plateau(self._plateau.mode, patience=self._plateau.patience, min_delta=self._plateau.min_delta)
            saved.load_state_dict(plateau)
        self.freezer.load_state_dict(state_dict["freezer"], allow_policy_change=self.allow_policy_change)
        if self._plateau is not None:
            self._plateau.load_state_dict(plateau)
        self._advance_pending = pending
        self._restored = True

    # Helpers ------------------------------------------------------------------------

    def _optimizer(self, trainer: pl.Trainer) -> Any:
        optimizers = trainer.optimizers
        if len(optimizers) != 1:
            raise PolicyUsageError(
                f"FreezePolicyCallback drives one optimizer, but configure_optimizers returned {len(optimizers)}"
            )
        return optimizers[0]

    @staticmethod
    def _schedulers(trainer: pl.Trainer, optimizer: Any) -> list[Any]:
        return [config.scheduler for config in trainer.lr_scheduler_configs if config.scheduler.optimizer is optimizer]


def _require_lr(policy: Policy) -> None:
    """A usage error, when the callback is made, if the policy scales a base learning rate it was not given."""
    for statement in policy.all_statements():
        if statement.options is not None and statement.options.lr_scale is not None:
            raise PolicyUsageError(
                f"'{statement.text}' ({policy.source.name}:{statement.span.line}) scales the base learning rate: "
                "pass the one configure_optimizers uses",
                help="FreezePolicyCallback(policy, lr=...)",
            )


def _rewrap(strategy: Any) -> None:
    """Build Lightning's DistributedDataParallel again after the set of trainable parameters changed.

    DDP fixes, when it wraps, which parameters it averages: one built before
    an unfreeze never averages the new parameters' gradients and the ranks
    drift apart. The old wrapper's gradient hooks go first.
    """
    if not isinstance(strategy, DDPStrategy) or strategy.model is strategy.lightning_module:
        return
    distributed.release(strategy.model)
    strategy.model = strategy.lightning_module
    strategy.configure_ddp()
