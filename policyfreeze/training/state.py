"""The ``Freezer``'s checkpoint state, validated before anything is restored.

A state comes from a file a user may have edited, truncated or taken from
another program: every field is checked (a pydantic model), and anything
that is not what ``Freezer.state_dict()`` writes is a ``PolicyUsageError``
naming the field, never a raw ``TypeError``/``KeyError``.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import PolicyUsageError, shorten

STATE_VERSION = 1


class GroupState(BaseModel):
    """One optimizer group as the Freezer laid it out: parameter names and the options it set."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    params: list[str]
    lr: float | None = None
    weight_decay: float | None = None

    @field_validator("lr")
    @classmethod
    def _positive(cls, value: float | None) -> float | None:
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ValueError("a learning rate is a positive finite number")
        return value

    @field_validator("weight_decay")
    @classmethod
    def _non_negative(cls, value: float | None) -> float | None:
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise ValueError("a weight decay is a finite number, zero or more")
        return value

    def options(self) -> dict[str, float]:
        return self.model_dump(exclude={"params"}, exclude_none=True)


class FreezerState(BaseModel):
    """What ``Freezer.state_dict()`` returns."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    version: int
    policy: str
    #: sha256 of what the policy says, as lowercase hex
    fingerprint: str = Field(pattern=r"^[0-9a-f]{64}$")
    unit: Literal["epoch", "step", "phase"] | None
    #: the epoch, step or phase reached
    at: int = Field(ge=0)
    groups: list[GroupState]


def validate_state(state: Any) -> FreezerState:
    """``state`` as a ``FreezerState``, or a ``PolicyUsageError`` naming the first field that is wrong."""
    if not isinstance(state, dict):
        raise PolicyUsageError(
            f"not a Freezer state: a dict, not {type(state).__name__}",
            help="pass what Freezer.state_dict() returned",
        )
    version = state.get("version")
    if version != STATE_VERSION and isinstance(version, int) and not isinstance(version, bool):
        raise PolicyUsageError(
            f"Freezer state version {version!r} is not supported (this release reads {STATE_VERSION})"
        )
    try:
        return FreezerState.model_validate(state)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = _path(error["loc"])
        if error["type"] == "missing":
            problem = "is missing"
        else:
            problem = f"is {shorten(repr(error['input']), 60)}: {error['msg'][:1].lower()}{error['msg'][1:]}"
        raise PolicyUsageError(
            f"not a Freezer state: '{field}' {problem}", help="pass what Freezer.state_dict() returned"
        ) from None


def _path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path
