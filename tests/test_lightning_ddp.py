"""Lightning's own DDP (``strategy="ddp"``, two CPU processes, gloo): trainable parameters stay equal on both
ranks across stage changes, because the callback rebuilds Lightning's DistributedDataParallel.

The test runs this file as a script: Lightning's DDP launcher starts the second rank by running the same
command again (``python tests/test_lightning_ddp.py OUT``), which a pytest process cannot be.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

DEADLINE_SECONDS = 240
EPOCHS = 3
POLICY = """\
freeze all; unfreeze head
eval type(BatchNorm1d)
at epoch 1 { unfreeze backbone.3 with lr_scale=0.5 }
at epoch 2 { unfreeze backbone.0, backbone.1; train backbone.1 }
"""


def run_rank(out: Path) -> None:
    """One rank of the fit (Lightning starts the other); saves this rank's parameters at each epoch start."""
    import lightning.pytorch as pl
    import torch.distributed as dist

    from policyfreeze.lightning import FreezePolicyCallback

    class Net(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)  # the same initial weights on both ranks
            self.backbone = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU())
            self.head = nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.backbone(x))

        def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
            x, y = batch
            return nn.functional.cross_entropy(self(x), y)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.AdamW(self.parameters(), lr=0.05)

    class Record(pl.Callback):
        """Each rank's parameters and flags as each epoch starts (after the stage change) and at the end."""

        def __init__(self) -> None:
            self.epochs: list[dict] = []

        def snapshot(self, pl_module: pl.LightningModule) -> dict:
            return {name: (p.detach().clone(), p.requires_grad) for name, p in pl_module.named_parameters()}

        def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            self.epochs.append(self.snapshot(pl_module))

        def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            self.epochs.append(self.snapshot(pl_module))

    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 4, generator=generator), torch.randint(0, 3, (64,), generator=generator)
    # Lightning gives each rank its own half of the data (DistributedSampler): their gradients differ.
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    record = Record()
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_epochs=EPOCHS,
        callbacks=[FreezePolicyCallback(POLICY, lr=0.05), record],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.fit(Net(), loader)
    torch.save(record.epochs, out / f"rank{trainer.global_rank}.pt")
    dist.barrier()  # both ranks saved; no rank tears down while the other still communicates
    gc.collect()  # DDP wrappers sit in reference cycles that keep the process group's work alive
    dist.destroy_process_group()
    # Interpreter finalization can still abort in gloo's worker threads (pytorch/pytorch#179291).
    os._exit(0)


def test_trainable_parameters_stay_equal_across_ranks_through_stage_changes(tmp_path):
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "PYTHONWARNINGS": "ignore"}
    # A session of its own: rank 0 and the rank it starts are killed together if the deadline passes.
    process = subprocess.Popen(
        [sys.executable, __file__, str(tmp_path)],
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = process.communicate(timeout=DEADLINE_SECONDS)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, output
    ranks = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == EPOCHS + 1
    start, end = ranks[0][0], ranks[0][-1]
    trainable = {
        epoch: {name for name, (_, flag) in snapshot.items() if flag} for epoch, snapshot in enumerate(ranks[0])
    }
    assert trainable[0] == {"head.weight", "head.bias"}
    assert trainable[1] == trainable[0] | {"backbone.3.weight", "backbone.3.bias"}
    assert trainable[2] == trainable[1] | {
        "backbone.0.weight",
        "backbone.0.bias",
        "backbone.1.weight",
        "backbone.1.bias",
    }
    for epoch, (first, second) in enumerate(zip(*ranks)):
        for name, (value, flag) in first.items():
            assert second[name][1] == flag, (epoch, name)
            assert torch.equal(second[name][0], value), (epoch, name)  # every parameter, trainable or not
    for name in trainable[2]:
        assert not torch.equal(end[name][0], start[name][0]), name  # trained (so the ranks' equality means something)
    for name in set(start) - trainable[2]:
        assert torch.equal(end[name][0], start[name][0]), name


if __name__ == "__main__":
    run_rank(Path(sys.argv[1]))
