"""When a monitored metric stops improving: the trigger of ``at phase N`` stages.

Framework callbacks feed it a metric after each validation and call
``Freezer.advance`` when ``update`` returns True, as finetuning-scheduler's
early-stopping-driven phases and Lightning's ``EarlyStopping`` do.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

from ..errors import PolicyUsageError

if TYPE_CHECKING:
    from ..language.policy import Policy


class Plateau:
    """Counts evaluations without improvement; reports a plateau after ``patience`` of them.

    ``mode="min"``: a value improves when it is below the best so far by more
    than ``min_delta`` (``"max"``: above it); the first value always does. A
    value that is not a finite number never improves. ``update(value)``
    returns True when ``patience`` evaluations in a row have not improved
    (0 and 1 both mean the first that does not, as in Lightning's
    ``EarlyStopping``), then starts over: the next phase gets its full
    patience, measured from its own first value.
    """

    def __init__(self, mode: Literal["min", "max"] = "min", *, patience: int = 3, min_delta: float = 0.0) -> None:
        if mode not in ("min", "max"):
            raise PolicyUsageError(f"mode is 'min' or 'max', not {mode!r}")
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise PolicyUsageError(f"patience is an integer 0 or more, not {patience!r}")
        valid = isinstance(min_delta, (int, float)) and not isinstance(min_delta, bool)
        if not valid or not math.isfinite(min_delta) or min_delta < 0:
            raise PolicyUsageError(f"min_delta is a finite number 0 or more, not {min_delta!r}")
        self.mode = mode
        self.patience = patience
        self.min_delta = float(min_delta)
        #: the best value since the last plateau (None: none yet)
        self.best: float | None = None
        #: evaluations in a row without improvement
        self.wait = 0

    def update(self, value: float) -> bool:
        """Record one evaluation; True when it completes a plateau (the state then starts over)."""
        value = float(value)
        if self._improves(value):
            self.best = value
            self.wait = 0
            return False
        self.wait += 1
        if self.wait >= self.patience:
            self.reset()
            return True
        return False

    def reset(self) -> None:
        """Forget the best value and the count (a new phase starts)."""
        self.best = None
        self.wait = 0

    def _improves(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def state_dict(self) -> dict[str, Any]:
        """Plain data for a checkpoint."""
        return {
            "mode": self.mode,
            "patience": self.patience,
            "min_delta": self.min_delta,
            "best": self.best,
            "wait": self.wait,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned; the settings must be this instance's."""
        if not isinstance(state, dict) or set(state) != {"mode", "patience", "min_delta", "best", "wait"}:
            raise PolicyUsageError("not a Plateau state: pass what Plateau.state_dict() returned")
        settings = (state["mode"], state["patience"], state["min_delta"])
        if settings != (self.mode, self.patience, self.min_delta):
            raise PolicyUsageError(
                f"the checkpoint's plateau settings (mode, patience, min_delta) = {settings} "
                f"differ from these: {(self.mode, self.patience, self.min_delta)}"
            )
        best, wait = state["best"], state["wait"]
        if best is not None and (isinstance(best, bool) or not isinstance(best, (int, float))):
            raise PolicyUsageError(f"not a Plateau state: 'best' is {best!r}")
        if isinstance(wait, bool) or not isinstance(wait, int) or not 0 <= wait < max(self.patience, 1):
            raise PolicyUsageError(f"not a Plateau state: 'wait' is {wait!r}")
        self.best = None if best is None else float(best)
        self.wait = wait


def plateau_for(
    policy: Policy, monitor: str | None, mode: Literal["min", "max"], patience: int, min_delta: float
) -> Plateau | None:
    """The plateau test a framework callback runs for ``policy`` and ``monitor`` (None without a monitor).

    An ``at phase`` policy needs a monitored metric; any other policy takes none.
    """
    if monitor is not None and (not isinstance(monitor, str) or not monitor):
        raise PolicyUsageError(f"monitor is the name of a logged metric, not {monitor!r}")
    if policy.unit == "phase":
        if monitor is None:
            raise PolicyUsageError(
                f"{policy.source.name} advances by phase, when a monitored metric stops improving: pass monitor=",
                help="name a metric validation reports: FreezePolicyCallback(policy, monitor=..., patience=...)",
            )
    elif monitor is not None:
        raise PolicyUsageError(
            f"monitor= advances `at phase` policies, but {policy.source.name} "
            f"{'schedules by ' + policy.unit if policy.unit else 'has no stages'}"
        )
    if monitor is None:
        return None
    return Plateau(mode, patience=patience, min_delta=min_delta)
