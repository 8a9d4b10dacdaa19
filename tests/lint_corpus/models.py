"""Small models for the lint corpus: each has the structure one finding needs."""

import torch
from torch import nn


class TiedLM(nn.Module):
    """The head's weight is the embedding's: one tensor, two names (PF204)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.body = nn.Linear(4, 4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.embed.weight


class Quantized(nn.Module):
    """An integer parameter cannot require gradients (PF207)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 2)
        self.table = nn.Parameter(torch.zeros(3, dtype=torch.long), requires_grad=False)


class ConvNet(nn.Module):
    """BatchNorm with and without running statistics, and an InstanceNorm (PF206)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.bn_batch_stats = nn.BatchNorm2d(4, track_running_stats=False)
        self.inorm = nn.InstanceNorm2d(4, affine=True, track_running_stats=True)
        self.head = nn.Linear(4, 2)


class NeedsData(nn.Module):
    """Its constructor computes with a tensor's values: it cannot be built on the meta device."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 2)
        scale = torch.ones(1).item()  # a meta tensor has no value
        self.scale = nn.Parameter(torch.full((1,), scale))


def tied() -> nn.Module:
    return TiedLM()


def quantized() -> nn.Module:
    return Quantized()


def convnet() -> nn.Module:
    return ConvNet()


def needs_data() -> nn.Module:
    return NeedsData()


class Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q_proj = nn.Linear(4, 4)
        self.v_proj = nn.Linear(4, 4)


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = Attention()
        self.mlp = nn.Linear(4, 4)


class TinyLM(nn.Module):
    """Two blocks with attention projections: what LoRA adapts (PF209)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.layers = nn.ModuleList([Block(), Block()])
        self.head = nn.Linear(4, 10)


def lora() -> nn.Module:
    """TinyLM with PEFT's LoRA on q_proj and v_proj: only the adapters train."""
    from peft import LoraConfig, get_peft_model

    return get_peft_model(TinyLM(), LoraConfig(target_modules=["q_proj", "v_proj"], r=2))
