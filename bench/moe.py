"""A mixture-of-experts style model on the ``meta`` device, its policies and their hand loops.

Shared by ``bench_resolve.py`` and the tests (``tests/test_reference_bench.py``
checks that every hand loop decides exactly what its policy decides).

Per block: attention (q, k, v, o), two LayerNorms, a router and ``experts``
experts of three bias-free ``Linear`` each (w1, w2, w3): 64 blocks × 256
experts is about 50,000 parameter tensors.
"""

from __future__ import annotations

import re

from torch import nn

DIM = 8
META = {"device": "meta"}  # as a keyword, not a device context: that costs a dispatch per operation


class Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q = nn.Linear(DIM, DIM, bias=False, **META)
        self.k = nn.Linear(DIM, DIM, bias=False, **META)
        self.v = nn.Linear(DIM, DIM, bias=False, **META)
        self.o = nn.Linear(DIM, DIM, bias=False, **META)


class Expert(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w1 = nn.Linear(DIM, DIM, bias=False, **META)
        self.w2 = nn.Linear(DIM, DIM, bias=False, **META)
        self.w3 = nn.Linear(DIM, DIM, bias=False, **META)


class Block(nn.Module):
    def __init__(self, experts: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(DIM, **META)
        self.attn = Attention()
        self.norm2 = nn.LayerNorm(DIM, **META)
        self.router = nn.Linear(DIM, experts, bias=False, **META)
        self.experts = nn.ModuleList(Expert() for _ in range(experts))


class MoE(nn.Module):
    def __init__(self, blocks: int, experts: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(64, DIM, **META)
        self.blocks = nn.ModuleList(Block(experts) for _ in range(blocks))
        self.norm = nn.LayerNorm(DIM, **META)
        self.head = nn.Linear(DIM, 64, **META)


def tensors_per_block(experts: int) -> int:
    return 3 * experts + 4 + 4 + 1


def build(tensors: int = 50_000, experts: int = 256) -> MoE:
    """About ``tensors`` parameter tensors (whole blocks of ``experts`` experts), on ``meta``."""
    return MoE(max(1, round(tensors / tensors_per_block(experts))), experts)


# --- the policies and the loops people write instead -------------------------
#
# One loop over named_parameters() per policy, every rule of a multi-statement
# policy fused into it (the last rule that applies wins, as in the policy):
# what people write instead of a policy.

LINEAR_PROBE = "freeze all\nunfreeze head\n"


def linear_probe_loop(model: nn.Module) -> None:
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith("head.")


BY_NAME = "freeze match /blocks\\.[0-7]\\./\n"
_BY_NAME = re.compile(r"blocks\.[0-7]\.")


def by_name_loop(model: nn.Module) -> None:
    for name, p in model.named_parameters():
        p.requires_grad = _BY_NAME.search(name) is None


FIRST_CHILDREN = "freeze children[0:2]\n"


def first_children_loop(model: nn.Module) -> None:
    first = tuple(name + "." for name, _ in list(model.named_children())[:2])
    for name, p in model.named_parameters():
        p.requires_grad = not name.startswith(first)


MIXED = """\
freeze all
unfreeze head, norm
unfreeze type(LayerNorm) & blocks.*
unfreeze *.attn.* except match /\\.k\\./
unfreeze blocks.*.experts.*.w2 & match /\\.experts\\.(?:[0-9]|1[0-5])\\./
unfreeze match /^blocks\\.[0-9]*[02468]\\.router/
freeze blocks.children[0:2]
unfreeze blocks.children[-1] except (*.experts.*.w1, *.experts.*.w3)
freeze blocks.*.experts.children[-1]
freeze *.norm1 & match /blocks\\.3/
unfreeze embed
freeze match /blocks\\.[0-9]*5\\.attn\\.q/
"""

_BLOCK = re.compile(r"blocks\.([0-9]+)\.")
_LOW_EXPERT_W2 = re.compile(r"experts\.(?:[0-9]|1[0-5])\.w2\.")
_EXPERT_W13 = re.compile(r"experts\.[0-9]+\.w[13]\.")


def mixed_loop(model: nn.Module) -> None:
    """The twelve statements of ``MIXED`` as one loop over named_parameters()."""
    last_block = len(model.blocks) - 1
    last_expert = f"experts.{len(model.blocks[0].experts) - 1}."
    for name, p in model.named_parameters():
        block = _BLOCK.match(name)
        if block is None:  # freeze all; unfreeze head, norm; unfreeze embed
            p.requires_grad = name.startswith(("head.", "norm.", "embed."))
            continue
        number, rest = block[1], name[block.end() :]
        trainable = rest.startswith(("norm1.", "norm2."))  # type(LayerNorm) & blocks.*
        if rest.startswith("attn.") and not rest.startswith("attn.k."):  # *.attn.* except match /\.k\./
            trainable = True
        if _LOW_EXPERT_W2.match(rest):  # blocks.*.experts.*.w2 & match /\.experts\.(?:[0-9]|1[0-5])\./
            trainable = True
        if rest.startswith("router.") and number[-1] in "02468":  # match /^blocks\.[0-9]*[02468]\.router/
            trainable = True
        if int(number) < 2:  # freeze blocks.children[0:2]
            trainable = False
        if int(number) == last_block and not _EXPERT_W13.match(rest):  # blocks.children[-1] except (w1, w3)
            trainable = True
        if rest.startswith(last_expert):  # freeze blocks.*.experts.children[-1]
            trainable = False
        if rest.startswith("norm1.") and "blocks.3" in name:  # freeze *.norm1 & match /blocks\.3/
            trainable = False
        if number[-1] == "5" and rest.startswith("attn.q."):  # freeze match /blocks\.[0-9]*5\.attn\.q/
            trainable = False
        p.requires_grad = trainable


POLICIES = {
    "linear-probe": (LINEAR_PROBE, linear_probe_loop),
    "by-name": (BY_NAME, by_name_loop),
    "first-children": (FIRST_CHILDREN, first_children_loop),
    "mixed-12": (MIXED, mixed_loop),
}
