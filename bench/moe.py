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

LINEAR_PROBE = "freeze all\nunfreeze head\n"


def linear_probe_loop(model: nn.Module) -> None:
    for p in model.parameters():
        p.requires_grad = False
    for p in model.head.parameters():
        p.requires_grad = True


BY_NAME = "freeze match /blocks\\.[0-7]\\./\n"
_BY_NAME = re.compile(r"blocks\.[0-7]\.")


def by_name_loop(model: nn.Module) -> None:
    for name, p in model.named_parameters():
        if _BY_NAME.search(name):
            p.requires_grad = False


FIRST_CHILDREN = "freeze children[0:2]\n"


def first_children_loop(model: nn.Module) -> None:
    for child in list(model.children())[:2]:
        for p in child.parameters():
            p.requires_grad = False


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

_K = re.compile(r"\.k\.")
_LOW_EXPERT = re.compile(r"\.experts\.(?:[0-9]|1[0-5])\.")
_W2 = re.compile(r"blocks\.[^.]*\.experts\.[^.]*\.w2(?:\.|$)")
_EVEN_ROUTER = re.compile(r"^blocks\.[0-9]*[02468]\.router")
_W13 = re.compile(r"\.experts\.[^.]*\.w[13](?:\.|$)")
_BLOCK3 = re.compile(r"blocks\.3")
_Q5 = re.compile(r"blocks\.[0-9]*5\.attn\.q")


def mixed_loop(model: nn.Module) -> None:
    """The twelve statements of ``MIXED`` as the loops one would write by hand."""
    for p in model.parameters():  # freeze all
        p.requires_grad = False
    for p in (*model.head.parameters(), *model.norm.parameters()):  # unfreeze head, norm
        p.requires_grad = True
    blocks = model.blocks
    for module in blocks.modules():  # unfreeze type(LayerNorm) & blocks.*
        if isinstance(module, nn.LayerNorm):
            for p in module.parameters():
                p.requires_grad = True
    for name, module in model.named_modules():  # unfreeze *.attn.* except match /\.k\./
        if name.endswith(".attn") or name == "attn":
            for pname, p in module.named_parameters(prefix=name):
                if not _K.search(pname):
                    p.requires_grad = True
    for name, p in model.named_parameters():  # unfreeze blocks.*.experts.*.w2 & match /…/
        if _W2.match(name) and _LOW_EXPERT.search(name):
            p.requires_grad = True
    for name, p in model.named_parameters():  # unfreeze match /^blocks\.[0-9]*[02468]\.router/
        if _EVEN_ROUTER.search(name):
            p.requires_grad = True
    for block in list(blocks.children())[0:2]:  # freeze blocks.children[0:2]
        for p in block.parameters():
            p.requires_grad = False
    last = list(blocks.children())[-1]  # unfreeze blocks.children[-1] except (w1, w3)
    for name, p in last.named_parameters(prefix="x"):
        if not _W13.search(name):
            p.requires_grad = True
    for block in blocks:  # freeze blocks.*.experts.children[-1]
        for p in list(block.experts.children())[-1].parameters():
            p.requires_grad = False
    for name, p in model.named_parameters():  # freeze *.norm1 & match /blocks\.3/
        if ".norm1." in name and _BLOCK3.search(name):
            p.requires_grad = False
    for p in model.embed.parameters():  # unfreeze embed
        p.requires_grad = True
    for name, p in model.named_parameters():  # freeze match /blocks\.[0-9]*5\.attn\.q/
        if _Q5.search(name):
            p.requires_grad = False


POLICIES = {
    "linear-probe": (LINEAR_PROBE, linear_probe_loop),
    "by-name": (BY_NAME, by_name_loop),
    "first-children": (FIRST_CHILDREN, first_children_loop),
    "mixed-12": (MIXED, mixed_loop),
}
