"""One training step, run on stand-ins for the model's tensors, and what it costs.

The model runs forward and backward through ``torch.func.functional_call``
with a stand-in for every parameter and buffer, so the model itself is not
touched: each stand-in requires grad as the costed flags say, and each module
is in train mode unless the costed pins hold it in eval. The stand-ins live on
the ``meta`` device (shapes only: no memory, no arithmetic). A forward that
needs tensor values (``.item()``, boolean indexing, a tensor made on the CPU)
cannot run there; then every step is run on the CPU instead, on zeros for
weights the model does not hold in memory, within ``CPU_LIMIT_BYTES``.

While it runs:

- ``FlopCounterMode`` counts the FLOPs;
- a ``saved_tensors_hooks`` pack hook sees every tensor autograd saves for the
  backward; the activations are their distinct storages (a view counts once,
  with its whole storage), less the parameters' and buffers';
- forward hooks on every module note which inputs require grad, and which of
  them are leaves the model itself marked (``t.requires_grad = True``): where
  a backward through a frozen module starts, and why;
- each autograd node is charged to the module whose forward made it (the
  node's sequence number falls in that module's call), and hooks on the nodes
  charge it the FLOPs counted while it runs in the backward. (The module
  breakdown of ``FlopCounterMode`` keeps a module open in the backward until
  its input's gradient is complete, so it would charge a residual block's
  downsampling convolution with the block's whole main branch.)
"""

from __future__ import annotations

import bisect
import collections
import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ...errors import PolicyUsageError

if TYPE_CHECKING:
    from ...model.tree import ModelTree
    from ...model.walk import LiveModel
    from .inputs import InputSpec

#: The most a run on the CPU may allocate for weights, buffers and inputs before it starts.
CPU_LIMIT_BYTES = 4 << 30
ADAMW_STATES_PER_ELEMENT = 2
#: The most autograd nodes searched for the trainable tensor a frozen module's input gradient flows to.
_SEARCHED_NODES = 100_000


@dataclass(frozen=True)
class FrozenBackward:
    """A frozen module (no parameter of it trains) that the backward still runs through, and why."""

    #: the module's name, its class, and the backward FLOPs spent inside it
    module: str
    classname: str
    flops: int
    #: the module (itself or one inside it) whose input requires grad: where its backward starts
    starts_at: str
    #: "marked": the model marked a tensor as requiring grad; "upstream": a parameter before it trains;
    #: "inside": a tensor its forward makes requires grad
    reason: str
    #: marked: the module whose forward marked the tensor; upstream: the trainable parameter
    source: str | None = None
    help: str | None = None

    @property
    def cause(self) -> str:
        """Why its backward runs, as one clause naming modules relative to it."""
        if self.reason == "upstream":
            return (
                f"its input requires grad: {self.source} trains before it" if self.source else "its input requires grad"
            )
        if self.reason == "marked":
            maker = "its forward" if self.source == self.module else f"the forward of {self.source or 'the model'}"
            what = "its input" if self.starts_at == self.module else f"the input of {self._relative(self.starts_at)}"
            return f"{maker} makes {what} require grad"
        return "a tensor its forward makes requires grad"

    def _relative(self, name: str) -> str:
        prefix = self.module + "." if self.module else ""
        return name.removeprefix(prefix) if prefix and name.startswith(prefix) else name or "the model"

    def to_dict(self) -> dict:
        return {
            "module": self.module,
            "class": self.classname,
            "flops": self.flops,
            "starts_at": self.starts_at,
            "reason": self.reason,
            "source": self.source,
            "cause": self.cause,
            "help": self.help,
        }


@dataclass(frozen=True)
class StepCost:
    """One training step: its FLOPs and the memory it holds, for one set of flags."""

    #: forward + backward
    flops: int
    #: distinct storages saved for backward, parameters and buffers left out
    activation_bytes: int
    #: one value per trainable element
    gradient_bytes: int
    #: AdamW's ``exp_avg`` and ``exp_avg_sq``: two values per trainable element
    optimizer_bytes: int
    #: every parameter and buffer, trainable or not
    weight_bytes: int
    frozen_backward: tuple[FrozenBackward, ...] = ()

    @property
    def frozen_backward_flops(self) -> int:
        """Backward FLOPs spent inside frozen modules."""
        return sum(entry.flops for entry in self.frozen_backward)

    @property
    def peak_bytes(self) -> int:
        """Weights, optimizer state, activations and gradients held at once: the step's peak, temporaries aside.

        An upper bound: in the backward the activations are freed as the
        gradients are made, so both are at their largest only in the worst case.
        """
        return self.weight_bytes + self.optimizer_bytes + self.activation_bytes + self.gradient_bytes

    def to_dict(self) -> dict:
        return {
            "flops": self.flops,
            "frozen_backward_flops": self.frozen_backward_flops,
            "activation_bytes": self.activation_bytes,
            "gradient_bytes": self.gradient_bytes,
            "optimizer_bytes": self.optimizer_bytes,
            "weight_bytes": self.weight_bytes,
            "peak_bytes": self.peak_bytes,
            "frozen_backward": [entry.to_dict() for entry in self.frozen_backward],
        }


class StepRunner:
    """Runs the model's training step for any flags and pins, on the meta device if it can, else the CPU."""

    def __init__(self, live: LiveModel, inputs: Sequence[InputSpec], *, hint: str | None = None) -> None:
        self.live = live
        #: said first in the help when the run fails (an input name the forward does not list)
        self.hint = hint
        self.tree: ModelTree = live.tree
        self.inputs = list(inputs)
        #: where the steps ran: "meta", or "cpu" once the meta device could not run them
        self.device = "meta"
        self.meta_failure: str | None = None
        self._param_ids = {id(tensor): number for number, tensor in enumerate(live.tensors)}
        self._module_ids = {id(module): number for number, module in enumerate(live.modules)}
        self._buffers = _unique(tensor for _, tensor in live.root.named_buffers(remove_duplicate=False))

    def costs(self, states: Sequence[tuple[Sequence[bool], Sequence[bool]]]) -> list[StepCost]:
        """The step's cost for each (per parameter id requires_grad, per module id eval pin)."""
        distinct = list(dict.fromkeys((tuple(flags), tuple(pins)) for flags, pins in states))
        try:
            measured = {state: self._cost(*state, device="meta") for state in distinct}
        except _RunFailed as failure:
            self.meta_failure = failure.describe()
            self._check_cpu_limit()
            self.device = "cpu"
            try:
                measured = {state: self._cost(*state, device="cpu") for state in distinct}
            except _RunFailed as cpu_failure:
                raise PolicyUsageError(
                    f"running the model on {_listed(self.inputs)} failed: {cpu_failure.describe()}",
                    help=f"{self.hint}; {_INPUT_HELP}" if self.hint else _INPUT_HELP,
                ) from cpu_failure.__cause__
        return [measured[(tuple(flags), tuple(pins))] for flags, pins in states]

    # One step ------------------------------------------------------------------

    def _cost(self, flags: tuple[bool, ...], pins: tuple[bool, ...], *, device: str) -> StepCost:
        import torch
        from torch.func import functional_call
        from torch.utils.flop_counter import FlopCounterMode

        stand_ins, params_of = self._stand_ins(flags, device)
        tracer = _Tracer(self.live, self._module_ids, params_of)
        saved = _SavedTensors({_storage_key(t) for t in stand_ins.values()})
        try:
            with contextlib.ExitStack() as stack:
                stack.enter_context(_modes(self.live.modules, pins))
                if device == "cpu":
                    stack.enter_context(_seeded())
                args, kwargs = self._tensors(device)
                stack.enter_context(self._bounds_checked(args, kwargs))
                stack.enter_context(tracer.hooked())
                stack.enter_context(torch.enable_grad())
                counter = stack.enter_context(FlopCounterMode(display=False))
                with torch.autograd.graph.saved_tensors_hooks(saved.pack, _unpack):
                    output = functional_call(self.live.root, stand_ins, tuple(args), kwargs)
                loss = _loss(output)
                if loss is not None:
                    tracer.charge_backward(loss, counter)
                    loss.backward()
        except PolicyUsageError:  # an input the model cannot take, found before it ran into it
            raise
        except Exception as exc:  # the user's model code: whatever it raises is a usage problem
            raise _RunFailed(exc) from exc
        gradient_bytes = _param_bytes(self.tree, flags)
        return StepCost(
            flops=counter.get_total_flops(),
            activation_bytes=saved.nbytes(),
            gradient_bytes=gradient_bytes,
            optimizer_bytes=ADAMW_STATES_PER_ELEMENT * gradient_bytes,
            weight_bytes=_param_bytes(self.tree, [True] * len(flags)) + sum(_nbytes(b) for b in self._buffers),
            frozen_backward=tuple(self._frozen_backward(flags, tracer, params_of)),
        )

    def _stand_ins(self, flags: Sequence[bool], device: str) -> tuple[dict[str, Any], dict[int, int]]:
        """Tensors to run on, by every name ``functional_call`` knows, and each parameter stand-in's id."""
        stand_ins: dict[str, Any] = {}
        params_of: dict[int, int] = {}
        made: dict[int, Any] = {}
        root = self.live.root
        for name, tensor in root.named_parameters(remove_duplicate=False):
            if id(tensor) not in made:
                number = self._param_ids.get(id(tensor))
                trains = tensor.requires_grad if number is None else flags[number]
                stand_in = _stand_in(tensor, device, copy=False)
                made[id(tensor)] = stand_in.requires_grad_(bool(trains) and _differentiable(stand_in))
                if number is not None:
                    params_of[id(made[id(tensor)])] = number
            stand_ins[name] = made[id(tensor)]
        for name, tensor in root.named_buffers(remove_duplicate=False):
            if id(tensor) not in made:
                made[id(tensor)] = _stand_in(tensor, device, copy=True)  # train mode updates running statistics
            stand_ins[name] = made[id(tensor)]
        return stand_ins, params_of

    def _tensors(self, device: str) -> tuple[list[Any], dict[str, Any]]:
        import torch

        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for spec in self.inputs:
            dtype = getattr(torch, spec.dtype or "float32")
            if device == "meta":
                tensor = torch.empty(spec.shape, dtype=dtype, device="meta")
            elif spec.high is not None:
                tensor = torch.randint(0, spec.high, spec.shape, dtype=dtype)
            elif dtype.is_floating_point or dtype.is_complex:
                tensor = torch.randn(spec.shape, dtype=dtype)
            else:
                tensor = torch.zeros(spec.shape, dtype=dtype)
            if spec.name is None:
                args.append(tensor)
            else:
                kwargs[spec.name] = tensor
        return args, kwargs

    @contextlib.contextmanager
    def _bounds_checked(self, args: list[Any], kwargs: dict[str, Any]) -> Iterator[None]:
        """Refuse a bounded integer input whose values would index past an embedding the forward looks it up in.

        On the meta device an embedding looks nothing up, so the step would be costed on indices a
        real step cannot take; on the CPU the lookup fails with a bare IndexError. A hook before each
        embedding checks its indices when they are an input (or a view of one, as GPT-2 reshapes them).
        """
        from torch import nn

        positional = iter(args)
        passed = [(next(positional) if spec.name is None else kwargs[spec.name], spec) for spec in self.inputs]
        bounded = [(tensor, spec, spec.high) for tensor, spec in passed if spec.high is not None]
        if not bounded:
            yield
            return

        def check(module: Any, call_args: tuple, call_kwargs: dict) -> None:
            indices = call_args[0] if call_args else call_kwargs.get("input")
            for tensor, spec, high in bounded:
                is_input = indices is tensor or getattr(indices, "_base", None) is tensor
                if is_input and high > module.num_embeddings:
                    raise _past_the_embedding(spec, high, self._module_name(module), module)

        handles = [
            module.register_forward_pre_hook(check, with_kwargs=True)
            for module in self.live.modules
            if isinstance(module, (nn.Embedding, nn.EmbeddingBag))
        ]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _module_name(self, module: Any) -> str:
        return self.tree.module_names[self._module_ids[id(module)]] or "(the model)"

    def _check_cpu_limit(self) -> None:
        params = (t for t in self.live.tensors if t.device.type != "cpu")
        needed = sum(map(_nbytes, params)) + sum(map(_nbytes, self._buffers)) + sum(s.nbytes() for s in self.inputs)
        if needed > CPU_LIMIT_BYTES:
            raise PolicyUsageError(
                f"the model cannot run on the meta device ({self.meta_failure}), and running it on the CPU "
                f"needs {needed / (1 << 30):.1f} GiB for its weights and inputs (the limit is "
                f"{CPU_LIMIT_BYTES >> 30} GiB)",
                help="cost a smaller configuration of the model, or leave out inputs whose values its forward "
                "inspects (an attention_mask often is)",
            )

    # Backward through frozen modules ---------------------------------------------

    def _frozen_backward(
        self, flags: Sequence[bool], tracer: _Tracer, params_of: dict[int, int]
    ) -> Iterator[FrozenBackward]:
        tree, live = self.tree, self.live
        reported: set[int] = set()
        for node in _maximal_frozen(tree, flags):
            module_id = tree.ids[node]
            inside = set(tree.module_ids_in([(node, tree.ends[node])]))
            flops = sum(tracer.backward.get(number, 0) for number in inside)
            if flops <= 0 or module_id in reported:
                continue
            reported.add(module_id)
            module = live.modules[module_id]
            name = tree.module_names[module_id]
            leaf = next((leaf for leaf in tracer.made if leaf.receiver in inside or leaf.creator in inside), None)
            if leaf is None and tracer.inputs.get(module_id):
                source = _nearest_leaf(tracer.inputs[module_id])
                leaf = next((leaf for leaf in tracer.made if leaf.tensor is source), None)
                if leaf is None:  # a parameter before it trains (None: the search gave up first)
                    param = tree.param_names[params_of[id(source)]] if id(source) in params_of else None
                    yield FrozenBackward(name, _class_name(module), flops, name, "upstream", param)
                    continue
            if leaf is None or leaf.creator is None:
                yield FrozenBackward(name, _class_name(module), flops, name, "inside")
                continue
            receiver = tree.module_names[leaf.receiver] if leaf.receiver in inside else name
            creator = tree.module_names[leaf.creator]
            yield FrozenBackward(
                name, _class_name(module), flops, receiver, "marked", creator, self._marked_help(leaf.creator)
            )

    def _marked_help(self, creator_id: int) -> str | None:
        """How to stop a module from marking its input, where the way is known."""
        creator = self.live.modules[creator_id]
        # Hugging Face's audio feature encoders (wav2vec2, HuBERT, WavLM, ...) set requires_grad on their
        # input in training while ``_requires_grad`` is True; only ``_freeze_parameters()`` clears it.
        if getattr(creator, "_requires_grad", None) is not True or not callable(
            getattr(creator, "_freeze_parameters", None)
        ):
            return None
        call = (
            "freeze_feature_encoder()"
            if callable(getattr(self.live.root, "freeze_feature_encoder", None))
            else f"{_class_name(creator)}._freeze_parameters()"
        )
        return f"call {call} too: it sets {_class_name(creator)}._requires_grad = False"


def _past_the_embedding(spec: InputSpec, high: int, name: str, embedding: Any) -> PolicyUsageError:
    rows = embedding.num_embeddings
    return PolicyUsageError(
        f"input {spec}: values up to {high - 1} index the embedding '{name}' "
        f"({_class_name(embedding)}), which has {rows} rows (0..{rows - 1})",
        help=f"bound the values by its size: {replace(spec, high=rows)}",
    )


class _RunFailed(Exception):
    def __init__(self, error: Exception) -> None:
        super().__init__(error)
        self.error = error

    def describe(self) -> str:
        """The error's type and first sentence, at most a line long (no C++ backtrace)."""
        text = str(self.error).split("Exception raised from", 1)[0].strip()
        first = text.splitlines()[0].strip() if text else ""
        first = first.split(". ", 1)[0]
        if len(first) > _DESCRIBED:
            first = first[: _DESCRIBED - 1] + "…"
        return f"{type(self.error).__name__}: {first}" if first else type(self.error).__name__


#: The most characters of an error message quoted.
_DESCRIBED = 100
_INPUT_HELP = (
    "the inputs are what the model's forward takes, batch first: --input-shape 8,3,224,224 for an image model, "
    "--input input_ids:int64[8,128]<VOCAB_SIZE for a token model"
)


@dataclass(frozen=True)
class _MadeLeaf:
    """A tensor that requires grad with no history and is no parameter: the model marked it."""

    #: the module whose forward was running when the tensor reached ``receiver`` (None: the caller's input)
    creator: int | None
    receiver: int
    tensor: Any


class _Tracer:
    """Hooks on every module and autograd node: inputs that require grad, leaves the model marked, backward FLOPs.

    A node's sequence number orders it among the nodes made in the forward;
    a probe node made as each module is entered and left marks where its
    call's numbers start and end, so the innermost call around a node's
    number is the module that made it.
    """

    def __init__(self, live: LiveModel, module_ids: dict[int, int], params_of: dict[int, int]) -> None:
        self.live = live
        self.module_ids = module_ids
        self.params_of = params_of
        #: per module id: the inputs that required grad at its first call
        self.inputs: dict[int, list[Any]] = {}
        self.made: list[_MadeLeaf] = []
        #: per module id: the backward FLOPs of the nodes its forward made (not its submodules')
        self.backward: dict[int, int] = collections.defaultdict(int)
        self._seen: set[int] = set()
        self._stack: list[int] = []
        #: sequence numbers where a module call starts or ends, and the module then running (-1: none)
        self._marks: list[int] = []
        self._running: list[int] = []
        self._probe: Any = None

    @contextlib.contextmanager
    def hooked(self) -> Iterator[None]:
        import torch

        self._probe = torch.empty((), device="meta", requires_grad=True)
        handles = []
        try:
            for number, module in enumerate(self.live.modules):
                handles.append(module.register_forward_pre_hook(self._entering(number), with_kwargs=True))
                handles.append(module.register_forward_hook(self._leaving, always_call=True))
            yield
        finally:
            for handle in handles:
                handle.remove()

    def charge_backward(self, loss: Any, counter: Any) -> None:
        """Hook every node of ``loss``'s graph to charge the FLOPs it runs to the module that made it."""
        started: dict[Any, int] = {}

        def start(node: Any) -> Any:
            def hook(grad_outputs: Any) -> None:
                started[node] = counter.get_total_flops()

            return hook

        def finish(node: Any, module_id: int) -> Any:
            def hook(grad_inputs: Any, grad_outputs: Any) -> None:
                self.backward[module_id] += counter.get_total_flops() - started.pop(node, 0)

            return hook

        for node in _graph(loss.grad_fn):
            if getattr(node, "variable", None) is not None:  # AccumulateGrad: adds, counts no FLOPs
                continue
            module_id = self._made_by(node._sequence_nr())
            if module_id >= 0:
                node.register_prehook(start(node))
                node.register_hook(finish(node, module_id))

    def _made_by(self, sequence_nr: int) -> int:
        index = bisect.bisect_right(self._marks, sequence_nr) - 1
        return self._running[index] if index >= 0 else -1

    def _mark(self, running: int) -> None:
        import torch

        if torch.is_grad_enabled():  # without grad no node is made, so none needs a mark
            self._marks.append(self._probe.view_as(self._probe).grad_fn._sequence_nr())
            self._running.append(running)

    def _entering(self, number: int) -> Any:
        def hook(module: Any, args: Any, kwargs: Any) -> None:
            requiring = [t for t in _tensors_in((args, kwargs)) if t.requires_grad]
            self.inputs.setdefault(number, requiring)
            for tensor in requiring:
                if tensor.grad_fn is None and id(tensor) not in self.params_of and id(tensor) not in self._seen:
                    self._seen.add(id(tensor))
                    self.made.append(_MadeLeaf(self._stack[-1] if self._stack else None, number, tensor))
            self._stack.append(number)
            self._mark(number)

        return hook

    def _leaving(self, module: Any, args: Any, output: Any) -> None:
        if self._stack:
            self._stack.pop()
        self._mark(self._stack[-1] if self._stack else -1)


class _SavedTensors:
    """The distinct storages autograd saves for backward, but for the excluded ones (parameters, buffers)."""

    def __init__(self, excluded: set[Any]) -> None:
        self.excluded = excluded
        self.storages: dict[Any, int] = {}
        self._held: list[Any] = []  # keeps each storage alive, so no key is reused within the step

    def pack(self, tensor: Any) -> Any:
        key = _storage_key(tensor)
        if key not in self.excluded and key not in self.storages:
            self.storages[key] = _storage_bytes(tensor)
            self._held.append(tensor)
        return tensor

    def nbytes(self) -> int:
        return sum(self.storages.values())


def _unpack(tensor: Any) -> Any:
    return tensor


def _storage_key(tensor: Any) -> Any:
    try:
        return tensor.untyped_storage()._cdata
    except (RuntimeError, NotImplementedError, AttributeError):  # sparse or a wrapper subclass: no one storage
        return ("tensor", id(tensor))


def _storage_bytes(tensor: Any) -> int:
    try:
        return tensor.untyped_storage().nbytes()
    except (RuntimeError, NotImplementedError, AttributeError):
        return tensor.numel() * tensor.element_size()


def _stand_in(tensor: Any, device: str, *, copy: bool) -> Any:
    """The tensor on ``device``: a meta tensor, or on the CPU its data (zeros for a tensor with none)."""
    import torch

    if device == "meta":
        return torch.empty_like(tensor, device="meta")
    if tensor.device.type == "meta":
        return torch.zeros(tensor.shape, dtype=tensor.dtype)
    data = tensor.detach()
    return data.to("cpu") if data.device.type != "cpu" else data.clone() if copy else data


def _differentiable(tensor: Any) -> bool:
    return tensor.is_floating_point() or tensor.is_complex()


@contextlib.contextmanager
def _seeded() -> Iterator[None]:
    """torch's, Python's and NumPy's random generators seeded, and put back as they were on exit.

    A step on values (dropout, SpecAugment's masks) then draws the same each
    time, and the user's random streams do not move.
    """
    import random

    import torch

    numpy: Any
    try:
        import numpy
    except ImportError:  # torch runs without NumPy
        numpy = None
    python_state = random.getstate()
    numpy_state = numpy.random.get_state() if numpy is not None else None
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            random.seed(0)
            if numpy is not None:
                numpy.random.seed(0)
            yield
    finally:
        random.setstate(python_state)
        if numpy is not None:
            numpy.random.set_state(numpy_state)


@contextlib.contextmanager
def _modes(modules: Sequence[Any], pins: Sequence[bool]) -> Iterator[None]:
    """Every module in train mode but the pinned ones, as after ``model.train()``; restored on exit."""
    before = [module.training for module in modules]
    try:
        for module, pinned in zip(modules, pins):
            module.training = not pinned
        yield
    finally:
        for module, training in zip(modules, before):
            module.training = training


def _tensors_in(value: Any) -> Iterator[Any]:
    """The tensors in nested dicts, lists and tuples (a Hugging Face ``ModelOutput`` is a dict)."""
    import torch

    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, torch.Tensor):
            yield item
        elif isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, (list, tuple)):
            pending.extend(item)


def _loss(output: Any) -> Any:
    """The sum of every floating-point output that requires grad: its backward is the step's backward."""
    parts = [t.sum() for t in _tensors_in(output) if t.requires_grad and _differentiable(t)]
    if not parts:
        return None
    total = parts[0].real if parts[0].is_complex() else parts[0]
    for part in parts[1:]:
        total = total + (part.real if part.is_complex() else part)
    return total


def _nearest_leaf(tensors: Sequence[Any]) -> Any:
    """The first leaf tensor a breadth-first walk of the autograd graph from ``tensors`` reaches."""
    queue: collections.deque[Any] = collections.deque()
    for tensor in tensors:
        if tensor.grad_fn is None:
            return tensor
        queue.append(tensor.grad_fn)
    seen = set(queue)
    while queue and len(seen) < _SEARCHED_NODES:
        node = queue.popleft()
        variable = getattr(node, "variable", None)
        if variable is not None:
            return variable
        for after, _ in node.next_functions:
            if after is not None and after not in seen:
                seen.add(after)
                queue.append(after)
    return None


def _graph(root: Any) -> Iterator[Any]:
    """Every autograd node reachable from ``root``, each once."""
    if root is None:
        return
    seen = {root}
    pending = [root]
    while pending:
        node = pending.pop()
        yield node
        for after, _ in node.next_functions:
            if after is not None and after not in seen:
                seen.add(after)
                pending.append(after)


def _maximal_frozen(tree: ModelTree, flags: Sequence[bool]) -> list[int]:
    """Module nodes whose subtree holds parameters, none trainable, and whose parent's subtree holds one."""
    param_nodes, slot_ids = tree.param_nodes, tree.param_slot_ids
    trainable_before = [0]
    for slot in range(len(param_nodes)):
        trainable_before.append(trainable_before[-1] + bool(flags[slot if slot_ids is None else slot_ids[slot]]))
    found: list[int] = []
    skip_until = -1
    for node in tree.module_nodes:
        if node < skip_until:
            continue
        first = bisect.bisect_left(param_nodes, node)
        last = bisect.bisect_left(param_nodes, tree.ends[node], first)
        if last > first and trainable_before[last] == trainable_before[first]:
            found.append(node)
            skip_until = tree.ends[node]
    return found


def _param_bytes(tree: ModelTree, flags: Sequence[bool]) -> int:
    import torch

    return sum(p.numel * getattr(torch, p.dtype).itemsize for p, flag in zip(tree.params, flags) if flag)


def _nbytes(tensor: Any) -> int:
    return tensor.numel() * tensor.element_size()


def _unique(tensors: Iterator[Any]) -> list[Any]:
    return list({id(t): t for t in tensors}.values())


def _class_name(module: Any) -> str:
    return type(module).__name__


def _listed(inputs: Sequence[InputSpec]) -> str:
    return "input " + ", ".join(map(str, inputs))
