"""Gradual unfreezing of a torchvision ResNet-18 with Lightning, on CPU, in well under a minute.

    python examples/lightning_gradual_unfreezing.py

The same policy as gradual_unfreezing.py (gradual-unfreezing.freeze, beside
this file), driven by policyfreeze.lightning.FreezePolicyCallback. The
LightningModule is written as it would be without policyfreeze:
configure_optimizers returns AdamW over all its parameters with a cosine
schedule. The callback applies the policy before the optimizer is built,
brings the optimizer in line with it (frozen parameters out, the policy's
groups and learning rates in), adds each stage's parameters at the start of
its epoch with the schedule following them, and keeps its state in
Lightning's checkpoints (trainer.fit(..., ckpt_path=...) resumes bit for bit).

The data set is synthetic (class c brightens colour channel c), so the
example runs anywhere; a real fine-tune loads pretrained weights.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import lightning.pytorch as pl
import torch
import torchvision
from torch import nn

from policyfreeze.lightning import FreezePolicyCallback

POLICY = Path(__file__).with_name("gradual-unfreezing.freeze")
CLASSES = 3
LR = 1e-3


class Classifier(pl.LightningModule):
    def __init__(self, epochs: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torchvision.models.resnet18(weights=None)  # weights="DEFAULT" for a real fine-tune
        self.net.fc = nn.Linear(self.net.fc.in_features, CLASSES)
        self.epochs = epochs
        self.history: list[dict] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, labels = batch
        return nn.functional.cross_entropy(self(images), labels)

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        images, labels = batch
        self.log("val_loss", nn.functional.cross_entropy(self(images), labels))

    def on_train_epoch_start(self) -> None:
        """Record what trains this epoch (the callback changed the stage just before)."""
        self.history.append(
            {
                "epoch": self.current_epoch,
                "trainable": sum(p.numel() for p in self.parameters() if p.requires_grad),
                "groups": [len(group["params"]) for group in self.optimizers().param_groups],
            }
        )

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.parameters(), lr=LR, weight_decay=0.01)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.epochs)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}


def synthetic_data(samples: int, image_size: int, seed: int) -> torch.utils.data.TensorDataset:
    """Noise images whose class brightens one colour channel: learnable in a few epochs."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, CLASSES, (samples,), generator=generator)
    images = 0.5 * torch.randn(samples, 3, image_size, image_size, generator=generator)
    images[torch.arange(samples), labels] += 1.0
    return torch.utils.data.TensorDataset(images, labels)


def main(
    epochs: int = 5, samples: int = 48, image_size: int = 24, batch_size: int = 16, ckpt_path: str | None = None
) -> list[dict]:
    """Fine-tune; returns what trained at each epoch run. Lightning writes logs and checkpoints to ./lightning_logs."""
    train_loader = torch.utils.data.DataLoader(synthetic_data(samples, image_size, 0), batch_size=batch_size)
    val_loader = torch.utils.data.DataLoader(synthetic_data(samples // 4, image_size, 1), batch_size=batch_size)
    model = Classifier(epochs)

    callback = FreezePolicyCallback(POLICY, module="net", lr=LR)  # the policy's names are the ResNet's
    trainer = pl.Trainer(max_epochs=epochs, callbacks=[callback])
    trainer.fit(model, train_loader, val_loader, ckpt_path=ckpt_path)

    for record in model.history:
        print(f"epoch {record['epoch']}: {record['trainable']:,} parameters train in groups of {record['groups']}")
    return model.history


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)  # epoch 4 reaches the last stage
    parser.add_argument("--ckpt-path", help="resume from this Lightning checkpoint")
    arguments = parser.parse_args()
    main(epochs=arguments.epochs, ckpt_path=arguments.ckpt_path)
