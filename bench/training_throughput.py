"""Training throughput of the platform's trainer against a plain PyTorch loop.

For each template, on generated data (a 30 KB text corpus, 3,000 table rows, 3,000 short
reviews), in alternating rounds (which side goes first alternates too), in this process:

(a) trainer: `train()` itself, with the template's default hyperparameters (fewer epochs, to
    keep rounds short): an Accelerator, two JSON lines per step written to /dev/null, the
    default checkpoint (at the end) and the model file.
(b) plain: the same network class built from the same configuration, the same data tensors
    (load_training_data with the same seed), batch size, sampler, AdamW, gradient clipping,
    learning-rate schedule and per-epoch validation, then the weights saved with safetensors;
    no Accelerator, no events, no checkpoint.

Both count training samples per second of wall time from the first step to the model file
written: for (a) from the `started` event to `completed`, so data loading, network building and
process start, which are the same for both, are left out. The ratio is the median of the
per-round ratios trainer/plain; the target is >= 0.9.

    .venv/bin/python bench/training_throughput.py [--templates char-lm,...] [--rounds 7] \
        [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch.utils.data import DataLoader

from aiplatform.datasets.formats import Format
from aiplatform.ml.data import EpochShuffle, keep_batch, load_training_data
from aiplatform.ml.networks import build_network
from aiplatform.ml.templates import get_template, validate_hyperparameters
from aiplatform.ml.trainer import JsonLines
from aiplatform.ml.training import (
    GRADIENT_CLIP,
    WEIGHT_DECAY,
    TrainingSpec,
    examples,
    learning_rate,
    train,
)
from benchlib import paired_ratio, print_ratio

TARGET_RATIO = 0.9
EPOCHS = {"char-lm": 2, "tabular-classifier": 10, "text-classifier": 1}


def write_corpus(path: Path) -> Format:
    generator = random.Random(0)
    words = [
        "the",
        "quick",
        "brown",
        "fox",
        "jumps",
        "over",
        "a",
        "lazy",
        "dog",
        "while",
        "the",
        "small",
        "cat",
        "sleeps",
    ]
    lines: list[str] = []
    while sum(map(len, lines)) < 30_000:
        lines.append(" ".join(generator.choices(words, k=generator.randint(5, 12))) + ".")
    path.write_text("\n".join(lines))
    return "text"


def write_table(path: Path) -> Format:
    generator = random.Random(1)
    rows = ["x,y,z,label"]
    for _ in range(3_000):
        x, y, z = generator.gauss(0, 1), generator.gauss(0, 1), generator.random()
        rows.append(f"{x:.4f},{y:.4f},{z:.4f},{'up' if x + y > 0 else 'down'}")
    path.write_text("\n".join(rows) + "\n")
    return "csv"


def write_reviews(path: Path) -> Format:
    generator = random.Random(2)
    good, bad = ["great", "lovely", "superb"], ["awful", "boring", "dreadful"]
    filler = ["the", "film", "was", "plot", "and", "quite", "really", "acting"]
    with path.open("w") as file:
        for row in range(3_000):
            words = generator.choices(filler, k=5) + generator.choices(good if row % 2 else bad)
            generator.shuffle(words)
            file.write(json.dumps({"text": " ".join(words), "label": str(row % 2)}) + "\n")
    return "jsonl"


DATASETS: dict[str, Callable[[Path], Format]] = {
    "char-lm": write_corpus,
    "tabular-classifier": write_table,
    "text-classifier": write_reviews,
}


@dataclass(frozen=True)
class Rate:
    """Samples per second of wall-clock time and of this process's CPU time."""

    wall: float
    cpu: float


class Clock:
    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()

    def rate(self, samples: int) -> Rate:
        return Rate(
            wall=samples / (time.perf_counter() - self.wall),
            cpu=samples / (time.process_time() - self.cpu),
        )


def trainer_rate(spec: TrainingSpec, sink: JsonLines) -> Rate:
    clock = Clock()
    rates: list[Rate] = []
    samples = 0

    def emit(event: dict[str, Any]) -> None:
        nonlocal clock, samples
        sink(event)
        if event["type"] == "started":
            clock = Clock()
            samples = event["train_samples"] * event["epochs"]
        if event["type"] == "completed":
            rates.append(clock.rate(samples))

    train(spec, emit)
    return rates[0]


def plain_rate(spec: TrainingSpec, work_dir: Path) -> Rate:
    """The loop a PyTorch user would write for the same training."""
    template = get_template(spec.template)
    settings: dict[str, Any] = validate_hyperparameters(template, spec.hyperparameters)
    torch.manual_seed(settings["seed"])
    data = load_training_data(template.name, Path(spec.dataset_path), spec.dataset_format, settings)
    config = {
        **{name: settings[name] for name in template.architecture_hyperparameters},
        "dropout": settings["dropout"],
        **data.config,
    }
    network = build_network(template.name, config)
    optimizer = torch.optim.AdamW(
        network.parameters(), lr=settings["learning_rate"], weight_decay=WEIGHT_DECAY
    )
    sampler = EpochShuffle(len(data.train), settings["seed"])
    batches = DataLoader(
        data.train, batch_size=settings["batch_size"], sampler=sampler, collate_fn=keep_batch
    )
    validation = DataLoader(
        data.validation, batch_size=settings["batch_size"], collate_fn=keep_batch
    )
    loss_of = language_model_loss if template.name == "char-lm" else classifier_loss
    total_steps = settings["epochs"] * len(batches)
    clock = Clock()
    samples = step = 0
    for epoch in range(settings["epochs"]):
        sampler.set_epoch(epoch)
        for batch in batches:
            rate = learning_rate(
                step, total_steps, settings["learning_rate"], settings["lr_schedule"]
            )
            for group in optimizer.param_groups:
                group["lr"] = rate
            loss = loss_of(network, batch)
            torch.autograd.backward(loss)
            torch.nn.utils.clip_grad_norm_(network.parameters(), GRADIENT_CLIP)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            samples += examples(batch)
            step += 1
        network.eval()
        with torch.no_grad():
            validation_loss = sum(loss_of(network, batch).item() for batch in validation)
        network.train()
        assert validation_loss >= 0
    save_file(
        {name: tensor.contiguous() for name, tensor in network.state_dict().items()},
        str(work_dir / "plain.safetensors"),
    )
    return clock.rate(samples)


def classifier_loss(network: torch.nn.Module, batch: Any) -> torch.Tensor:
    inputs, labels = batch
    return F.cross_entropy(network(inputs), labels)


def language_model_loss(network: torch.nn.Module, batch: Any) -> torch.Tensor:
    tokens = batch.long()
    logits = network(tokens[:, :-1])
    return F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())


def compare(template: str, rounds: int, directory: Path, sink: JsonLines) -> None:
    dataset = directory / template
    spec = TrainingSpec(
        job_id="bench",
        template=template,
        hyperparameters={"epochs": EPOCHS[template]},
        dataset_path=str(dataset),
        dataset_format=DATASETS[template](dataset),
        work_dir=str(directory / f"{template}-work"),
    )
    work_dir = Path(spec.work_dir)
    work_dir.mkdir()
    # A first round of each, untimed: allocator and caches warm up.
    trainer_rate(spec, sink)
    plain_rate(spec, work_dir)
    trainer: list[Rate] = []
    plain: list[Rate] = []
    for round_number in range(rounds):
        sides: list[Callable[[], None]] = [
            lambda: trainer.append(trainer_rate(spec, sink)),
            lambda: plain.append(plain_rate(spec, work_dir)),
        ]
        for side in sides if round_number % 2 == 0 else reversed(sides):
            side()
        print(
            f"{template} round {round_number + 1}: trainer {trainer[-1].wall:,.0f} samples/s, "
            f"plain {plain[-1].wall:,.0f} samples/s",
            flush=True,
        )
    cpu_ratio = paired_ratio([r.cpu for r in trainer], [r.cpu for r in plain])
    # On a shared machine, CPU time is the steadier measure of the work each side does.
    print(f"{template}: trainer/plain per CPU second {cpu_ratio:.2f}")
    print_ratio(
        f"trainer/plain {template}",
        [r.wall for r in trainer],
        [r.wall for r in plain],
        TARGET_RATIO,
    )


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--templates", default=",".join(DATASETS))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--threads", type=int, default=torch.get_num_threads(), help="torch's intra-op threads"
    )
    return parser.parse_args()


def main() -> None:
    arguments = parse_arguments()
    torch.set_num_threads(arguments.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    with tempfile.TemporaryDirectory() as directory, open(os.devnull, "wb") as devnull:
        for template in arguments.templates.split(","):
            compare(template, arguments.rounds, Path(directory), JsonLines(devnull))


if __name__ == "__main__":
    main()
