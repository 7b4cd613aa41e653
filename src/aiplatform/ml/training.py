"""One training run of a built-in template through an Accelerator (one process or many), from
a TrainingSpec to a model file, reporting every step through `emit`.

The events are plain dicts (the child process writes them as JSON lines, see ml/trainer.py):
started, progress and metrics after every optimizer step, metrics and a log line after every
epoch's evaluation, checkpoint, then completed, or interrupted when asked to stop. Only the main
process emits; losses and validation results are reduced over all processes first.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

import msgspec
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import gather_object, set_seed
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import DataLoader

from aiplatform.datasets.formats import Format
from aiplatform.ml.checkpoints import Position, load_checkpoint, save_checkpoint
from aiplatform.ml.data import EpochShuffle, TrainingData, keep_batch, load_training_data
from aiplatform.ml.model_files import ModelFileError, read_metadata, write_model
from aiplatform.ml.networks import build_network, parameter_count
from aiplatform.ml.templates import Template, get_template, validate_hyperparameters

Emit = Callable[[dict[str, Any]], None]

MODEL_FILE: Final = "model.safetensors"
WEIGHT_DECAY: Final = 0.01
GRADIENT_CLIP: Final = 1.0
_LONGEST_WARMUP = 100


class TrainingSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What the platform asks of a training child: `work_dir` receives `checkpoints/` and
    `model.safetensors`; `resume_from` is a checkpoint directory an earlier run reported;
    `base_model_path` a model file of the same template to start from (its architecture
    hyperparameters replace the given ones)."""

    job_id: str
    template: str
    hyperparameters: dict[str, Any]
    dataset_path: str
    dataset_format: Format
    work_dir: str
    resume_from: str | None = None
    base_model_path: str | None = None


class TrainingDivergedError(RuntimeError):
    pass


def train(spec: TrainingSpec, emit: Emit, stop_requested: Callable[[], bool] | None = None) -> None:
    """Trains, checkpoints and writes the model file. `stop_requested` is asked after every
    step; once it says yes, the run saves a checkpoint, emits `interrupted` and returns."""
    template = get_template(spec.template)
    hyperparameters: dict[str, Any] = validate_hyperparameters(template, spec.hyperparameters)
    accelerator = Accelerator()
    report = emit if accelerator.is_main_process else _silent
    base_config = _base_config(spec, template, hyperparameters, report)
    set_seed(hyperparameters["seed"])
    data = load_training_data(
        template.name,
        Path(spec.dataset_path),
        spec.dataset_format,
        hyperparameters,
        base_config,
    )
    for note in data.notes:
        report({"type": "log", "level": "info", "message": note})
    config = {
        **{name: hyperparameters[name] for name in template.architecture_hyperparameters},
        "dropout": hyperparameters["dropout"],
        **data.config,
    }
    network = build_network(template.name, config)
    if base_config is not None and spec.resume_from is None:
        network.load_state_dict(load_file(str(spec.base_model_path)))
    run = TrainingRun(
        accelerator,
        network,
        data,
        hyperparameters,
        objective=_objective(template, data, accelerator.device, hyperparameters),
        emit=report,
        stop_requested=stop_requested or _never,
    )
    work_dir = Path(spec.work_dir)
    position = run.begin(template.name, spec.resume_from)
    if run.train(work_dir, position):
        run.finish(
            work_dir / MODEL_FILE,
            template=template.name,
            hyperparameters=hyperparameters,
            config=config,
        )


def _silent(event: dict[str, Any]) -> None:
    """Processes other than the main one report nothing: the main one speaks for all."""


def _never() -> bool:
    return False


def _base_config(
    spec: TrainingSpec, template: Template, hyperparameters: dict[str, Any], report: Emit
) -> dict[str, Any] | None:
    """The configuration of the base model, whose architecture hyperparameters replace the
    given ones (in place), or None without a base model."""
    if spec.base_model_path is None:
        return None
    metadata = read_metadata(Path(spec.base_model_path))
    if metadata["template"] != template.name:
        raise ModelFileError(
            f"the base model is a {metadata['template']}; this job trains a {template.name}"
        )
    for name in template.architecture_hyperparameters:
        theirs = metadata["hyperparameters"][name]
        if hyperparameters[name] != theirs:
            report(
                {
                    "type": "log",
                    "level": "warning",
                    "message": f"`{name}` is {theirs} as in the base model, not "
                    f"{hyperparameters[name]}",
                }
            )
            hyperparameters[name] = theirs
    config: dict[str, Any] = metadata["config"]
    return config


# -- what is optimised -------------------------------------------------------------------------


class Objective(Protocol):
    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """The mean loss of a training batch."""

    def evaluate(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Per example: the loss, and 1.0 where the prediction is right (classifiers)."""

    def summarise(self, losses: torch.Tensor, right: torch.Tensor) -> dict[str, float]:
        """The validation metrics from all examples' evaluations."""


@dataclass(frozen=True)
class Classification:
    class_weights: torch.Tensor | None

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        inputs, labels = batch
        return F.cross_entropy(model(inputs), labels, weight=self.class_weights)

    def evaluate(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, labels = batch
        logits = model(inputs)
        right = (logits.argmax(-1) == labels).float()
        return F.cross_entropy(logits, labels, reduction="none"), right

    def summarise(self, losses: torch.Tensor, right: torch.Tensor) -> dict[str, float]:
        return {"val_loss": losses.mean().item(), "val_accuracy": right.mean().item()}


class NextByte:
    """Windows of block_size + 1 bytes: each position predicts the byte after it."""

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        tokens = batch.long()
        logits = model(tokens[:, :-1])
        return F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())

    def evaluate(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = batch.long()
        logits = model(tokens[:, :-1])
        losses = F.cross_entropy(logits.transpose(1, 2), tokens[:, 1:], reduction="none")
        return losses.mean(1), torch.zeros(len(tokens), device=tokens.device)

    def summarise(self, losses: torch.Tensor, right: torch.Tensor) -> dict[str, float]:
        loss = losses.mean().item()
        return {"val_loss": loss, "val_perplexity": math.exp(min(loss, 700.0))}


def _objective(
    template: Template,
    data: TrainingData,
    device: torch.device,
    hyperparameters: Mapping[str, Any],
) -> Objective:
    if template.task == "language-modeling":
        return NextByte()
    weights = None
    if hyperparameters["balance_classes"]:
        counts = torch.tensor(data.class_counts, dtype=torch.float32, device=device)
        present = int((counts > 0).sum())
        weights = torch.where(counts > 0, counts.sum() / (present * counts), 0.0)
    return Classification(weights)


def examples(batch: Any) -> int:
    """Examples in a batch: (inputs, labels) of a classifier, or a tensor of windows."""
    return len(batch[-1]) if isinstance(batch, tuple | list) else len(batch)


def learning_rate(step: int, total_steps: int, peak: float, schedule: str) -> float:
    """The rate of the 0-based `step`: a linear warm-up over 5% of the steps (at most 100),
    then constant or a cosine decay to a tenth of the peak."""
    warmup = max(1, min(_LONGEST_WARMUP, total_steps // 20))
    if step < warmup:
        return peak * (step + 1) / warmup
    if schedule == "constant":
        return peak
    progress = (step - warmup) / max(1, total_steps - warmup)
    return peak * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))


# Data-parallel setups, in which Accelerate's backward, clipping and optimizer step add nothing
# to torch's own when there is no gradient scaler and no gradient accumulation.
_PLAIN_DATA_PARALLEL: Final = frozenset({"NO", "MULTI_CPU", "MULTI_GPU", "MULTI_XPU", "MULTI_NPU"})


def steps_directly(accelerator: Accelerator) -> bool:
    """Whether an update may call torch directly rather than through the Accelerator. It pays:
    the prepared optimizer's `step` looks for the LOMO package on sys.path twice per call, its
    `zero_grad` inspects a signature and the clipping wrapper sorts parameters by tensor kind,
    0.3 ms a step together, a tenth of a small network's step on a CPU."""
    return (
        accelerator.scaler is None
        and accelerator.gradient_accumulation_steps == 1
        and accelerator.distributed_type in _PLAIN_DATA_PARALLEL
    )


# -- the run -----------------------------------------------------------------------------------


class TrainingRun:
    def __init__(
        self,
        accelerator: Accelerator,
        network: nn.Module,
        data: TrainingData,
        hyperparameters: Mapping[str, Any],
        *,
        objective: Objective,
        emit: Emit,
        stop_requested: Callable[[], bool],
    ) -> None:
        self.accelerator = accelerator
        self.hyperparameters = hyperparameters
        self.objective = objective
        self.emit = emit
        self.stop_requested = stop_requested
        self.parameter_count = parameter_count(network)
        self.train_samples = len(data.train)  # type: ignore[arg-type]
        self.validation_samples = len(data.validation)  # type: ignore[arg-type]
        batch_size = int(hyperparameters["batch_size"])
        # Seeded by seed + epoch rather than by the global RNG: a resumed run must see the same
        # batches. The loader's own generator keeps it from drawing on the global RNG, whose
        # state a checkpoint restores.
        self.sampler = EpochShuffle(self.train_samples, int(hyperparameters["seed"]))
        train_loader = DataLoader(
            data.train,
            batch_size=batch_size,
            sampler=self.sampler,
            collate_fn=keep_batch,
            generator=torch.Generator(),
        )
        validation_loader = DataLoader(
            data.validation, batch_size=batch_size, collate_fn=keep_batch
        )
        optimizer = torch.optim.AdamW(
            network.parameters(),
            lr=float(hyperparameters["learning_rate"]),
            weight_decay=WEIGHT_DECAY,
        )
        self.model, self.optimizer, self.train_loader, self.validation_loader = accelerator.prepare(
            network, optimizer, train_loader, validation_loader
        )
        self.plain_optimizer = optimizer
        self.weights = list(self.model.parameters())
        self.direct = steps_directly(accelerator)
        self.steps_per_epoch = len(self.train_loader)
        self.epochs = int(hyperparameters["epochs"])
        self.total_steps = self.epochs * self.steps_per_epoch
        self.metrics: dict[str, float] = {}
        self.samples = 0
        self.started_at = 0.0

    def begin(self, template: str, resume_from: str | None) -> Position:
        """Restores a checkpoint if asked, and announces the run."""
        position = Position(
            template=template,
            epoch=0,
            step_in_epoch=0,
            global_step=0,
            steps_per_epoch=self.steps_per_epoch,
            num_processes=self.accelerator.num_processes,
            seed=int(self.hyperparameters["seed"]),
        )
        if resume_from is not None:
            position = self._resume(Path(resume_from), position)
        self.emit(
            {
                "type": "started",
                "total_steps": self.total_steps,
                "epochs": self.epochs,
                "steps_per_epoch": self.steps_per_epoch,
                "num_processes": self.accelerator.num_processes,
                "devices": gather_object([str(self.accelerator.device)]),
                "train_samples": self.train_samples,
                "validation_samples": self.validation_samples,
                "parameters": self.parameter_count,
                "resumed_from_step": position.global_step if resume_from else None,
            }
        )
        return position

    def _resume(self, directory: Path, fresh: Position) -> Position:
        saved = load_checkpoint(self.accelerator, directory, fresh.template)
        if (saved.steps_per_epoch, saved.num_processes) != (
            self.steps_per_epoch,
            self.accelerator.num_processes,
        ):
            raise ValueError(
                f"the checkpoint was made by {saved.num_processes} process(es) with "
                f"{saved.steps_per_epoch} steps per epoch; this run has "
                f"{self.accelerator.num_processes} with {self.steps_per_epoch}: resume with "
                "the same processes, batch size and dataset"
            )
        return saved

    def train(self, work_dir: Path, position: Position) -> bool:
        """All remaining epochs; False if stopped on request (after saving a checkpoint)."""
        self.started_at = time.perf_counter()
        every = int(self.hyperparameters["checkpoint_every"])
        for epoch in range(position.epoch, self.epochs):
            skip = position.step_in_epoch if epoch == position.epoch else 0
            losses: list[float] = []
            for step_in_epoch, batch in enumerate(self._batches(epoch, skip), skip + 1):
                position = msgspec.structs.replace(
                    position,
                    epoch=epoch,
                    step_in_epoch=step_in_epoch,
                    global_step=position.global_step + 1,
                )
                losses.append(self._step(batch, position))
                stop = self._stop_agreed()
                last = position.global_step == self.total_steps
                if stop or last or (every and position.global_step % every == 0):
                    self._checkpoint(work_dir, position)
                if stop:
                    self.emit({"type": "interrupted", "step": position.global_step})
                    return False
            self._evaluate(epoch, position.global_step, losses)
        return True

    def _batches(self, epoch: int, skip: int) -> Iterable[Any]:
        loader = (
            self.accelerator.skip_first_batches(self.train_loader, skip)
            if skip
            else self.train_loader
        )
        # The prepared loader sets its sampler's epoch from its own iteration count, and with
        # several processes may not reach our sampler: set both.
        loader.set_epoch(epoch)
        self.sampler.set_epoch(epoch)
        return loader  # type: ignore[no-any-return]

    def _step(self, batch: Any, position: Position) -> float:
        rate = learning_rate(
            position.global_step - 1,
            self.total_steps,
            float(self.hyperparameters["learning_rate"]),
            str(self.hyperparameters["lr_schedule"]),
        )
        for group in self.optimizer.param_groups:
            group["lr"] = rate
        loss = self.objective.loss(self.model, batch)
        self._update(loss)
        value = self._mean_over_processes(loss.detach())
        if not math.isfinite(value):
            raise TrainingDivergedError(
                f"the training loss became {value} at step {position.global_step}; "
                "try a lower learning_rate"
            )
        self.samples += examples(batch) * self.accelerator.num_processes
        epoch = position.epoch + 1
        self.emit(
            {
                "type": "progress",
                "step": position.global_step,
                "epoch": epoch,
                "total_steps": self.total_steps,
                "samples_per_second": self._samples_per_second(),
            }
        )
        self.emit(
            {
                "type": "metrics",
                "step": position.global_step,
                "epoch": epoch,
                "values": {"loss": value, "learning_rate": rate},
            }
        )
        return value

    def _update(self, loss: torch.Tensor) -> None:
        if self.direct:
            torch.autograd.backward(loss)
            torch.nn.utils.clip_grad_norm_(self.weights, GRADIENT_CLIP)
            self.plain_optimizer.step()
            self.plain_optimizer.zero_grad(set_to_none=True)
        else:
            self.accelerator.backward(loss)
            self.accelerator.clip_grad_norm_(self.weights, GRADIENT_CLIP)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)

    def _mean_over_processes(self, value: torch.Tensor) -> float:
        if self.accelerator.num_processes > 1:
            value = self.accelerator.reduce(value, reduction="mean")
        return float(value.item())

    def _stop_agreed(self) -> bool:
        """Whether any process was asked to stop: all must save the checkpoint together."""
        stop = self.stop_requested()
        if self.accelerator.num_processes == 1:
            return stop
        flag = torch.tensor(float(stop), device=self.accelerator.device)
        return bool(self.accelerator.reduce(flag, reduction="sum").item() > 0)

    def _samples_per_second(self) -> float:
        return self.samples / max(time.perf_counter() - self.started_at, 1e-9)

    def _checkpoint(self, work_dir: Path, position: Position) -> None:
        path = save_checkpoint(self.accelerator, work_dir, position)
        self.emit(
            {
                "type": "checkpoint",
                "step": position.global_step,
                "epoch": position.epoch + 1,
                "path": str(path),
            }
        )

    def _evaluate(self, epoch: int, step: int, train_losses: list[float]) -> None:
        self.model.eval()
        losses, right = [], []
        with torch.no_grad():
            for batch in self.validation_loader:
                batch_losses, batch_right = self.objective.evaluate(self.model, batch)
                losses.append(self.accelerator.gather_for_metrics(batch_losses))
                right.append(self.accelerator.gather_for_metrics(batch_right))
        self.model.train()
        values = self.objective.summarise(torch.cat(losses), torch.cat(right)) if losses else {}
        mean_loss = {"loss": sum(train_losses) / len(train_losses)} if train_losses else {}
        self.metrics = {**mean_loss, **values}
        if values:
            self.emit({"type": "metrics", "step": step, "epoch": epoch + 1, "values": values})
        summary = ", ".join(f"{name} {value:.4g}" for name, value in self.metrics.items())
        self.emit(
            {
                "type": "log",
                "level": "info",
                "message": f"epoch {epoch + 1}/{self.epochs}: {summary or 'no steps left'}",
            }
        )

    def finish(
        self,
        path: Path,
        *,
        template: str,
        hyperparameters: Mapping[str, Any],
        config: Mapping[str, Any],
    ) -> None:
        """Writes the model file from the main process and announces it."""
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_model(
                path,
                self.accelerator.unwrap_model(self.model),
                template=template,
                hyperparameters=hyperparameters,
                config=config,
                metrics=self.metrics,
                parameters=self.parameter_count,
            )
        self.accelerator.wait_for_everyone()
        self.emit(
            {
                "type": "completed",
                "artifact_path": str(path.resolve()),
                "metrics": self.metrics,
                "parameters": self.parameter_count,
                "samples_per_second": self._samples_per_second(),
            }
        )
