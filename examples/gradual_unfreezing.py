"""ULMFiT-style gradual unfreezing of a torchvision ResNet-18, on CPU, in well under a minute.

    python examples/gradual_unfreezing.py
    python examples/gradual_unfreezing.py --checkpoint /tmp/run.pt --stop-after 2   # then run again to resume

What trains when lives in gradual-unfreezing.freeze, beside this file; the
loop below only asks a policyfreeze.Freezer to move to each new epoch. The
Freezer applies the stage (requires_grad and BatchNorm eval pins), adds the
newly trainable parameters to the optimizer as new parameter groups with the
learning rates the policy gives them, and reports what changed.

The data set is synthetic (class c brightens colour channel c), so the
example runs anywhere; a real fine-tune loads pretrained weights.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torchvision
from torch import nn

import policyfreeze

POLICY = Path(__file__).with_name("gradual-unfreezing.freeze")
CLASSES = 3


def synthetic_data(samples: int, image_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise images whose class brightens one colour channel: learnable in a few epochs."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, CLASSES, (samples,), generator=generator)
    images = 0.5 * torch.randn(samples, 3, image_size, image_size, generator=generator)
    images[torch.arange(samples), labels] += 1.0
    return images, labels


def build_model() -> nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None)  # weights="DEFAULT" for a real fine-tune
    model.fc = nn.Linear(model.fc.in_features, CLASSES)
    return model


def main(
    epochs: int = 6,
    samples: int = 96,
    image_size: int = 32,
    batch_size: int = 16,
    lr: float = 1e-3,
    checkpoint: Path | None = None,
    stop_after: int | None = None,
    log=print,
) -> list[dict]:
    """Train; returns one record per epoch run. With ``checkpoint``, save after each epoch and resume from it."""
    model = build_model()
    freezer = policyfreeze.Freezer(model, POLICY, lr=lr, weight_decay=0.01)
    start = 0
    saved = torch.load(checkpoint, weights_only=True) if checkpoint and checkpoint.exists() else None
    if saved:
        model.load_state_dict(saved["model"])
        freezer.load_state_dict(saved["freezer"])  # the saved stage, and the groups laid out as saved
        start = saved["epoch"] + 1
        log(f"resumed after epoch {saved['epoch']}")
    optimizer = torch.optim.AdamW(freezer.param_groups())  # only what trains now
    if saved:
        optimizer.load_state_dict(saved["optimizer"])

    images, labels = synthetic_data(samples, image_size, seed=0)
    history = []
    for epoch in range(start, epochs):
        change = freezer.update(optimizer, epoch=epoch)
        if change:
            log(change)
        problems = policyfreeze.check_optimizer(model, optimizer)
        if problems:
            raise policyfreeze.PolicyError.collect(list(problems))

        model.train()  # pinned BatchNorm layers stay in eval
        order = torch.randperm(samples, generator=torch.Generator().manual_seed(epoch))
        total = 0.0
        for batch in order.split(batch_size):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(images[batch]), labels[batch])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        record = {
            "epoch": epoch,
            "loss": total / samples,
            "trainable": freezer.report.after.trainable,
            "groups": [len(group["params"]) for group in optimizer.param_groups],
        }
        history.append(record)
        log(f"epoch {epoch}: loss {record['loss']:.3f}, {record['trainable']:,} parameters train")
        if checkpoint:
            torch.save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "freezer": freezer.state_dict(),
                    "epoch": epoch,
                },
                checkpoint,
            )
        if stop_after is not None and epoch >= stop_after:
            break
    return history


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--checkpoint", type=Path, help="save after every epoch; resume from it if it exists")
    parser.add_argument("--stop-after", type=int, metavar="EPOCH", help="stop after this epoch (to try resuming)")
    arguments = parser.parse_args()
    main(epochs=arguments.epochs, checkpoint=arguments.checkpoint, stop_after=arguments.stop_after)
