"""Gradual unfreezing of a small BERT classifier with the Hugging Face Trainer, on CPU, in well under a minute.

    python examples/hf_trainer_gradual_unfreezing.py --output-dir /tmp/run
    python examples/hf_trainer_gradual_unfreezing.py --output-dir /tmp/run2 --resume /tmp/run/checkpoint-12

What trains when lives in bert-gradual-unfreezing.freeze, beside this file;
policyfreeze.transformers.FreezePolicyCallback drives it through an
unchanged Trainer: the Trainer's own AdamW (no weight decay for biases and
LayerNorms) and its cosine schedule. The callback applies the policy when
the Trainer is made, adds each stage's parameters at the start of its
epoch as new groups on the schedule, and saves its state in every
checkpoint folder, so resume_from_checkpoint continues bit for bit.

The model is built from a config (no download) and the data set is
synthetic (the label says whether the first token is in the upper half of
the vocabulary); a real fine-tune starts from pretrained weights.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainerCallback, TrainingArguments

from policyfreeze.transformers import FreezePolicyCallback

POLICY = Path(__file__).with_name("bert-gradual-unfreezing.freeze")
VOCABULARY = 100


class Sentences(torch.utils.data.Dataset):
    def __init__(self, samples: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, VOCABULARY, (samples, 16), generator=generator)
        self.labels = (self.ids[:, 0] >= VOCABULARY // 2).long()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[index], "labels": self.labels[index]}


def build_model() -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(  # BertForSequenceClassification.from_pretrained(...) for a real fine-tune
        vocab_size=VOCABULARY,
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
        num_labels=2,
    )
    return BertForSequenceClassification(config)


class History(TrainerCallback):
    """What trains at each epoch (after the policy's stage change) and the evaluation loss after it."""

    def __init__(self) -> None:
        self.epochs: list[dict] = []

    def on_epoch_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        self.epochs.append({"trainable": trainable, "groups": [len(g["params"]) for g in optimizer.param_groups]})

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.epochs[-1]["eval_loss"] = metrics["eval_loss"]


def main(
    output_dir: str = "hf-trainer-run",
    epochs: int = 4,
    samples: int = 192,
    resume: str | None = None,
) -> list[dict]:
    """Fine-tune; returns what trained at each epoch run and its evaluation loss."""
    model = build_model()
    train_data, eval_data = Sentences(samples, seed=0), Sentences(samples // 4, seed=1)
    args = TrainingArguments(
        output_dir=output_dir,
        num_train_epochs=epochs,
        per_device_train_batch_size=32,
        learning_rate=5e-3,
        weight_decay=0.01,
        lr_scheduler_type="cosine",
        eval_strategy="epoch",
        save_strategy="epoch",
        use_cpu=True,
        report_to=[],
        disable_tqdm=True,
        logging_strategy="no",
    )

    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_data,
        eval_dataset=eval_data,
        callbacks=[FreezePolicyCallback(POLICY)],
    )
    history = History()
    trainer.add_callback(history)
    trainer.train(resume_from_checkpoint=resume)

    for record in history.epochs:
        print(
            f"{record['trainable']:,} parameters train in groups of {record['groups']}: eval loss {record['eval_loss']:.4f}"
        )
    return history.epochs


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default="hf-trainer-run")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--resume", help="a checkpoint folder of an earlier run, such as OUTPUT_DIR/checkpoint-12")
    arguments = parser.parse_args()
    main(output_dir=arguments.output_dir, epochs=arguments.epochs, resume=arguments.resume)
