"""Small models with the structures the language must handle exactly.

Each factory returns a fresh model with every parameter trainable unless the
structure itself needs otherwise (``intparam``; ``lora``, whose base weights
PEFT freezes).
"""

import torch
import torchvision
from torch import nn


def tiny() -> nn.Module:
    """Digit-named children (nn.Sequential), a parameterless child, nesting."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(2, 3),
        nn.ReLU(),
        nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3)),
        nn.Linear(3, 1),
    )


class TiedLM(nn.Module):
    """The head's weight is the embedding's: one tensor, two names."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.body = nn.Linear(4, 4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.embed.weight


def tied() -> nn.Module:
    return TiedLM()


class Shared(nn.Module):
    """One module object registered under two names."""

    def __init__(self) -> None:
        super().__init__()
        block = nn.Linear(2, 2)
        self.a = block
        self.b = block
        self.c = nn.Linear(2, 2)


def shared() -> nn.Module:
    return Shared()


def keywords() -> nn.Module:
    """Children whose names are keywords or need quoting."""
    return nn.ModuleDict(
        {
            "epoch": nn.Linear(2, 2),
            "all": nn.Linear(2, 2),
            "match": nn.Linear(2, 2),
            "my-block": nn.Linear(2, 2),
            "plain": nn.Linear(2, 2),
        }
    )


class MyBatchNorm(nn.BatchNorm2d):
    """A subclass: type() must see its MRO (BatchNorm2d, _BatchNorm, _NormBase)."""


class Mro(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.norm = MyBatchNorm(4)
        self.plain_norm = nn.BatchNorm2d(4)
        self.ln = nn.LayerNorm(4)


def mro() -> nn.Module:
    return Mro()


class IntParam(nn.Module):
    """An integer parameter cannot require gradients."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 2)
        self.table = nn.Parameter(torch.zeros(3, dtype=torch.long), requires_grad=False)


def intparam() -> nn.Module:
    return IntParam()


def wide() -> nn.Module:
    """Twelve children, so index 10 exists; the last is a Sequential of four (a ReLU second)."""
    torch.manual_seed(0)
    last = nn.Sequential(nn.Linear(1, 1), nn.ReLU(), nn.Linear(1, 1), nn.Linear(1, 1))
    return nn.Sequential(*(nn.Linear(1, 1) for _ in range(11)), last)


class Projections(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q_proj = nn.Linear(4, 4)
        self.v_proj = nn.Linear(4, 4)
        self.head = nn.Linear(4, 2)


def lora() -> nn.Module:
    """Real PEFT LoRA on q_proj: as PEFT builds it, only the adapters are trainable."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    return get_peft_model(Projections(), LoraConfig(target_modules=["q_proj"], r=2))


FACTORIES = {
    "tiny": tiny,
    "tied": tied,
    "shared": shared,
    "keywords": keywords,
    "mro": mro,
    "intparam": intparam,
    "wide": wide,
    "lora": lora,
    "resnet18": lambda: torchvision.models.resnet18(weights=None),
}
