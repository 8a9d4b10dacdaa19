"""The inputs of a costed step: ``[NAME:][DTYPE][SIZES][<HIGH]`` specs, checked before anything runs.

``input_ids:int64[8,128]<50257`` is a keyword argument ``input_ids``, a tensor
of 8×128 ``int64`` values in ``[0, 50257)``; ``float32[8,3,224,224]`` (no
name) is the next positional argument. A spec without a dtype takes the
model's floating-point dtype, or ``int64`` when it has a bound.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ...errors import PolicyUsageError, shorten

#: The largest byte size torch can give a tensor (its sizes and strides are int64).
MAX_TENSOR_BYTES = 2**63 - 1

SPEC_SYNTAX = "[NAME:][DTYPE][SIZES][<HIGH]"
SPEC_EXAMPLE = "input_ids:int64[8,128]<50257"

_SPEC = re.compile(
    r"(?:(?P<name>[A-Za-z_]\w*)\s*:\s*)?(?P<dtype>[A-Za-z_]\w*)?\s*\[(?P<sizes>[^\]]*)\]\s*(?:<\s*(?P<high>\S+))?",
    re.ASCII,
)
_SIZE = re.compile(r"\s*([0-9]+)\s*")
#: The dtypes an input usually has: suggested first for a misspelt one.
_COMMON_DTYPES = ["bool", "uint8", "int8", "int16", "int32", "int64", "float16", "bfloat16", "float32", "float64"]
#: More digits than any size or bound torch can hold (2**63 has 19).
_MAX_DIGITS = 20


@dataclass(frozen=True)
class InputSpec:
    """One input of the costed step: a tensor's shape, dtype and value range, passed by position or name."""

    shape: tuple[int, ...]
    #: a torch dtype name (``int64``, ``bfloat16``); None: the model's floating-point dtype (``int64`` with ``high``)
    dtype: str | None = None
    #: the forward's keyword argument; None: the next positional argument
    name: str | None = None
    #: values are drawn from ``[0, high)``; None: zeros (integers) or standard normal (floating point)
    high: int | None = None

    @classmethod
    def parse(cls, text: str) -> InputSpec:
        """``"input_ids:int64[2,16]<50257"`` → ``InputSpec((2, 16), "int64", "input_ids", 50257)``."""
        shown = f"--input {shorten(text)!r}"
        match = _SPEC.fullmatch(text.strip())
        if match is None:
            raise PolicyUsageError(
                f"{shown}: expected {SPEC_SYNTAX}, for example {SPEC_EXAMPLE}",
                help="NAME is the forward's keyword argument (none: positional), HIGH bounds the values: 0 ≤ v < HIGH",
            )
        high = match["high"]
        if high is not None and not re.fullmatch("[0-9]+", high):
            raise PolicyUsageError(
                f"{shown}: the bound after '<' is a whole number (values 0 ≤ v < HIGH), not {shorten(high)!r}"
            )
        if high is not None and len(high) > _MAX_DIGITS:
            raise PolicyUsageError(f"{shown}: the bound {shorten(high)} is too large for any integer dtype")
        spec = cls(
            shape=_sizes(match["sizes"], shown, allow_scalar=True),
            dtype=match["dtype"],
            name=match["name"],
            high=None if high is None else int(high),
        )
        return spec.checked(shown)

    def checked(self, shown: str | None = None) -> InputSpec:
        """The spec with its dtype written as torch names it; a usage error when torch could not build it."""
        import torch

        shown = shown or f"input {self!r}"
        try:
            sizes = tuple(self.shape)
        except TypeError:
            raise PolicyUsageError(f"{shown}: the shape is a sequence of sizes, not {self.shape!r}") from None
        dtype = None if self.dtype is None else dtype_named(self.dtype, shown)
        shape = _checked_sizes(sizes, shown, 8 if dtype is None else dtype.itemsize)
        spec = InputSpec(shape, None if dtype is None else _dtype_name(dtype), self.name, self.high)
        if self.name is not None and not (isinstance(self.name, str) and self.name.isidentifier()):
            raise PolicyUsageError(f"{shown}: the name is a Python identifier (a keyword argument), not {self.name!r}")
        if self.high is not None:
            if isinstance(self.high, bool) or not isinstance(self.high, int) or self.high < 1:
                raise PolicyUsageError(f"{shown}: the bound is a whole number 1 or more (values 0 ≤ v < HIGH)")
            if dtype is not None:
                if dtype.is_floating_point or dtype.is_complex:
                    raise PolicyUsageError(
                        f"{shown}: a bound (<{self.high}) is for integer and bool inputs, not {spec.dtype}",
                        help="a floating-point input's values do not change the cost: drop the bound",
                    )
                try:
                    largest = 1 if dtype == torch.bool else torch.iinfo(dtype).max
                except TypeError:  # bits8, int4, ...: no range torch can draw values from
                    raise PolicyUsageError(
                        f"{shown}: torch cannot draw {spec.dtype} values, so they take no bound",
                        help="integer inputs are bool, uint8, int8, int16, int32 or int64",
                    ) from None
                if self.high - 1 > largest:
                    raise PolicyUsageError(f"{shown}: {spec.dtype} holds values up to {largest}, below {self.high}")
        return spec

    def with_dtype(self, default: str) -> InputSpec:
        """The spec with a dtype: its own, ``int64`` when it has a bound, else ``default``."""
        if self.dtype is not None:
            return self
        spec = InputSpec(self.shape, "int64" if self.high is not None else default, self.name, self.high)
        return spec.checked()

    def nbytes(self) -> int:
        return _numel(self.shape) * dtype_named(self.dtype or "float32", str(self)).itemsize

    def to_dict(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape), "high": self.high}

    def __str__(self) -> str:
        name = f"{self.name}:" if self.name else ""
        high = f"<{self.high}" if self.high is not None else ""
        return f"{name}{self.dtype or ''}[{','.join(map(str, self.shape))}]{high}"


def parse_shape(text: str) -> tuple[int, ...]:
    """``--input-shape 8,3,224,224`` → ``(8, 3, 224, 224)``."""
    shown = f"--input-shape {shorten(text)!r}"
    return _checked_sizes(_sizes(text, shown, allow_scalar=False), shown)


def checked_shape(input_shape: Any) -> tuple[int, ...]:
    """``Report.cost``'s ``input_shape``: positive whole sizes, batch first."""
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = ()
    if not shape or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape):
        raise PolicyUsageError(f"input_shape must be positive sizes, batch first (8, 3, 224, 224), not {input_shape!r}")
    return _checked_sizes(shape, "input_shape")


def coerce(input_shape: Any, inputs: Sequence[InputSpec | str] | None) -> list[InputSpec]:
    """The step's inputs from ``Report.cost``'s arguments: one of ``input_shape`` and ``inputs``."""
    if (input_shape is None) == (inputs is None):
        raise PolicyUsageError(
            "give the step's input as input_shape= (one floating-point tensor) or inputs= (specs), not "
            + ("both" if inputs is not None else "neither"),
            help=f"inputs=['{SPEC_EXAMPLE}', 'attention_mask:int64[8,128]<2']",
        )
    if input_shape is not None:
        return [InputSpec(checked_shape(input_shape))]
    if isinstance(inputs, (str, InputSpec)) or not isinstance(inputs, Sequence) or not inputs:
        raise PolicyUsageError(
            f"inputs is a non-empty list of input specs ({SPEC_SYNTAX}), not {shorten(repr(inputs))}",
            help=f"inputs=['{SPEC_EXAMPLE}']",
        )
    specs = []
    for item in inputs:
        if isinstance(item, str):
            specs.append(InputSpec.parse(item))
        elif isinstance(item, InputSpec):
            specs.append(item.checked())
        else:
            raise PolicyUsageError(f"an input is a spec string or an InputSpec, not {type(item).__name__}")
    names = [spec.name for spec in specs if spec.name is not None]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise PolicyUsageError(f"input {repeated[0]!r} is given more than once")
    return specs


def check_accepted(root: Any, specs: Sequence[InputSpec]) -> str | None:
    """A usage error when the model's ``forward`` cannot take these inputs (by position and name).

    A forward with ``**kwargs`` takes any name: then the names it does not
    list come back as a hint, for the message if the run fails.
    """
    import inspect

    try:
        signature = inspect.signature(root.forward)
    except (TypeError, ValueError):  # a builtin or a C extension: the run itself will say
        return None
    parameters = signature.parameters.values()
    named = [p.name for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY)]
    listed = ", ".join(named[:8]) + (f", … ({len(named)} in all)" if len(named) > 8 else "")
    where = f"{type(root).__name__}.forward"
    help = f"its arguments: {listed}" if named else "it takes no named arguments"
    unknown = [spec.name for spec in specs if spec.name is not None and spec.name not in named]
    near = difflib.get_close_matches(unknown[0], named, n=1) if unknown else []
    if unknown and not any(p.kind == p.VAR_KEYWORD for p in parameters):
        raise PolicyUsageError(
            f"{where} takes no input {unknown[0]!r}", help=f"did you mean {near[0]}? {help}" if near else help
        )
    positional = [spec for spec in specs if spec.name is None]
    keywords = {spec.name: spec for spec in specs if spec.name is not None}
    try:
        signature.bind(*positional, **keywords)
    except TypeError as exc:
        raise PolicyUsageError(f"{where} cannot take these inputs: {exc}", help=help) from None
    if unknown:
        return f"{where} lists no argument {unknown[0]!r}" + (f" (did you mean {near[0]}?)" if near else "")
    return None


def dtype_named(name: str, shown: str) -> Any:
    """The torch dtype called ``name`` (``int64``, ``long``, ``bfloat16``); a usage error naming the near misses."""
    import torch

    dtype = getattr(torch, name, None) if isinstance(name, str) and not name.startswith("_") else None
    if isinstance(dtype, torch.dtype):
        return dtype
    known = sorted({_dtype_name(value) for value in vars(torch).values() if isinstance(value, torch.dtype)})
    near = difflib.get_close_matches(str(name), _COMMON_DTYPES, n=3) or difflib.get_close_matches(str(name), known, n=3)
    raise PolicyUsageError(
        f"{shown}: torch has no dtype {shorten(str(name))!r}",
        help=f"did you mean {' or '.join(near)}?" if near else "for example int64, float32, bfloat16 or bool",
    )


def _dtype_name(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")


def _sizes(text: str, shown: str, *, allow_scalar: bool) -> tuple[int, ...]:
    if allow_scalar and not text.strip():
        return ()
    parts = text.split(",")
    if not all(_SIZE.fullmatch(part) for part in parts):
        raise PolicyUsageError(f"{shown}: expected positive sizes separated by commas, batch first (8,3,224,224)")
    if any(len(part.strip()) > _MAX_DIGITS for part in parts):
        raise PolicyUsageError(f"{shown}: too large: a size of more than {_MAX_DIGITS} digits fits in no tensor")
    return tuple(int(part) for part in parts)


def _checked_sizes(shape: tuple[int, ...], shown: str, itemsize: int = 8) -> tuple[int, ...]:
    """Positive sizes whose tensor torch can describe (``itemsize``: 8, float64's, when the dtype is not known yet)."""
    if not all(isinstance(size, int) and not isinstance(size, bool) for size in shape):
        raise PolicyUsageError(f"{shown}: sizes are whole numbers, not {shape!r}")
    if any(size <= 0 for size in shape):
        raise PolicyUsageError(f"{shown}: expected positive sizes (1 or more), not {min(shape)}")
    if _numel(shape) * itemsize > MAX_TENSOR_BYTES:
        raise PolicyUsageError(
            f"{shown}: too large: {_numel(shape):.3g} elements do not fit in one tensor (at most 2**63-1 bytes)",
            help="FLOPs and activations grow with the batch and sequence length: cost a smaller input and scale",
        )
    return tuple(shape)


def _numel(shape: tuple[int, ...]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count
