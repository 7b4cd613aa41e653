"""The trainer: each template learns a generated dataset in-process; the child process speaks
JSON lines through `accelerate launch`; stopping, resuming mid-epoch, SIGTERM and failures."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import msgspec
import psutil
import pytest
import torch
from accelerate import Accelerator
from safetensors.torch import load_file

from aiplatform.datasets.formats import Format
from aiplatform.ml import training
from aiplatform.ml.model_files import ModelInputError, generate, load_model, predict
from aiplatform.ml.trainer import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_PARENT_GONE
from aiplatform.ml.training import TrainingSpec, train

Events = list[dict[str, Any]]

ACCELERATE = Path(sys.executable).with_name("accelerate")
LAUNCH = [
    str(ACCELERATE),
    "launch",
    "--cpu",
    "--num_processes",
    "1",
    "--num_machines",
    "1",
    "--mixed_precision",
    "no",
    "--dynamo_backend",
    "no",
    "--num_cpu_threads_per_process",
    "2",
]
TINY_GPT = {"d_model": 32, "n_layers": 1, "n_heads": 2, "block_size": 32, "batch_size": 16}


def write_blobs(path: Path, rows: int = 400, label: str = "label") -> Path:
    """Two labelled clouds of points, a noise column, a text column and a few gaps."""
    generator = random.Random(1)
    lines = [f"x,y,noise,name,{label}"]
    for row in range(rows):
        inside = row % 2 == 0
        x = generator.gauss(1.5 if inside else -1.5, 1.0)
        y = "" if row % 50 == 0 else f"{generator.gauss(0, 1):.3f}"
        lines.append(f"{x:.3f},{y},{generator.random():.3f},n{row},{'in' if inside else 'out'}")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_reviews(path: Path, rows: int = 600) -> Path:
    generator = random.Random(2)
    good, bad = ["great", "lovely", "superb"], ["awful", "boring", "dreadful"]
    filler = ["the", "film", "was", "plot", "and", "quite", "really", "acting"]
    with path.open("w") as file:
        for row in range(rows):
            label = "good" if row % 2 else "bad"
            words = generator.choices(filler, k=3) + generator.choices(
                good if row % 2 else bad, k=2
            )
            generator.shuffle(words)
            file.write(json.dumps({"text": " ".join(words), "label": label}) + "\n")
    return path


def write_corpus(path: Path, characters: int = 4_000) -> Path:
    generator = random.Random(3)
    lines = ["the cat sat on the mat.", "a dog ran in the sun.", "birds sing at dawn."]
    text = ""
    while len(text) < characters:
        text += generator.choice(lines) + "\n"
    path.write_text(text)
    return path


def spec_for(
    tmp_path: Path, template: str, dataset: Path, fmt: Format, **hyperparameters: Any
) -> TrainingSpec:
    return TrainingSpec(
        job_id="job-1",
        template=template,
        hyperparameters=hyperparameters,
        dataset_path=str(dataset),
        dataset_format=fmt,
        work_dir=str(tmp_path / "work"),
    )


def run(spec: TrainingSpec, stop_requested: Callable[[], bool] | None = None) -> Events:
    events: Events = []
    train(spec, events.append, stop_requested)
    return events


def of_type(events: Events, kind: str) -> Events:
    return [event for event in events if event["type"] == kind]


def step_losses(events: Events) -> list[float]:
    return [e["values"]["loss"] for e in of_type(events, "metrics") if "loss" in e["values"]]


def validation(events: Events) -> list[dict[str, float]]:
    return [e["values"] for e in of_type(events, "metrics") if "val_loss" in e["values"]]


# -- learning ----------------------------------------------------------------------------------


def test_tabular_classifier_learns_and_predicts(tmp_path: Path) -> None:
    dataset = write_blobs(tmp_path / "blobs.csv")
    events = run(spec_for(tmp_path, "tabular-classifier", dataset, "csv", epochs=8))

    started, completed = of_type(events, "started")[0], of_type(events, "completed")[0]
    assert started["train_samples"] == 320
    assert started["validation_samples"] == 80
    assert started["total_steps"] == 8 * started["steps_per_epoch"] == len(step_losses(events))
    assert validation(events)[-1]["val_accuracy"] >= 0.8
    assert of_type(events, "log")[0]["message"] == "columns ignored as not numeric: name"

    model = load_model(Path(completed["artifact_path"]))
    assert model.config["features"] == ["x", "y", "noise"]
    assert model.metadata["metrics"] == completed["metrics"]
    far_in, far_out = predict(
        model, [{"x": 4, "y": None, "noise": 0.5}, {"x": "-4", "y": 0, "noise": 0}]
    )
    assert (far_in["label"], far_out["label"]) == ("in", "out")
    assert far_in["probabilities"]["in"] > 0.9
    with pytest.raises(ModelInputError, match="input 0 has no value for noise"):
        predict(model, [{"x": 1, "y": 2}])
    with pytest.raises(ModelInputError, match="only a char-lm model generates"):
        generate(model, "hello")


def test_text_classifier_learns_and_predicts(tmp_path: Path) -> None:
    dataset = write_reviews(tmp_path / "reviews.jsonl")
    hyperparameters = {
        "epochs": 3,
        "learning_rate": 3e-3,
        "max_length": 48,
        "d_model": 32,
        "n_layers": 1,
    }
    events = run(spec_for(tmp_path, "text-classifier", dataset, "jsonl", **hyperparameters))

    assert validation(events)[-1]["val_accuracy"] >= 0.8
    model = load_model(Path(of_type(events, "completed")[0]["artifact_path"]))
    results = predict(model, ["the film was superb and lovely", {"text": "awful, boring plot"}])
    assert [result["label"] for result in results] == ["good", "bad"]
    assert sum(results[0]["probabilities"].values()) == pytest.approx(1.0)


def test_char_lm_loss_falls_and_it_generates(tmp_path: Path) -> None:
    dataset = write_corpus(tmp_path / "corpus.txt")
    events = run(spec_for(tmp_path, "char-lm", dataset, "text", epochs=3, **TINY_GPT))

    losses = step_losses(events)
    assert sum(losses[-5:]) / 5 < losses[0] * 0.7
    assert validation(events)[-1]["val_perplexity"] < 20
    model = load_model(Path(of_type(events, "completed")[0]["artifact_path"]))
    text = "".join(generate(model, "the ", max_new_tokens=40, seed=7))
    assert text == "".join(generate(model, "the ", max_new_tokens=40, seed=7))
    assert "".join(generate(model, "the ", max_new_tokens=40, temperature=0))
    with pytest.raises(ModelInputError, match="generates text from a prompt"):
        predict(model, ["the cat"])


def test_a_base_model_is_continued_with_its_own_architecture(tmp_path: Path) -> None:
    dataset = write_blobs(tmp_path / "blobs.csv")
    base = run(spec_for(tmp_path / "base", "tabular-classifier", dataset, "csv", epochs=4))
    base_path = of_type(base, "completed")[0]["artifact_path"]
    spec = spec_for(tmp_path, "tabular-classifier", dataset, "csv", epochs=1, hidden_size=8)
    events = run(msgspec.structs.replace(spec, base_model_path=base_path))

    warnings = [e["message"] for e in of_type(events, "log") if e["level"] == "warning"]
    assert warnings == ["`hidden_size` is 64 as in the base model, not 8"]
    model = load_model(Path(of_type(events, "completed")[0]["artifact_path"]))
    assert model.config["hidden_size"] == 64
    # It starts where the base model ended, not from scratch.
    assert step_losses(events)[0] < step_losses(base)[0] * 0.6


def test_stepping_past_accelerates_wrappers_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset = write_blobs(tmp_path / "blobs.csv")
    assert training.steps_directly(Accelerator())  # one CPU process: the shortcut is taken
    direct = run(spec_for(tmp_path / "direct", "tabular-classifier", dataset, "csv", epochs=2))
    monkeypatch.setattr(training, "steps_directly", lambda _accelerator: False)
    wrapped = run(spec_for(tmp_path / "wrapped", "tabular-classifier", dataset, "csv", epochs=2))
    assert step_losses(direct) == step_losses(wrapped)
    weights = [
        load_file(tmp_path / side / "work" / "model.safetensors") for side in ("direct", "wrapped")
    ]
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])


# -- stopping and resuming ---------------------------------------------------------------------


def test_a_stopped_run_resumes_mid_epoch_to_the_same_weights(tmp_path: Path) -> None:
    dataset = write_blobs(tmp_path / "blobs.csv")
    # Dropout on: equal weights need the RNG state restored from the checkpoint too.
    settings = {"epochs": 3, "batch_size": 32, "checkpoint_every": 5, "dropout": 0.2}
    whole = run(spec_for(tmp_path / "whole", "tabular-classifier", dataset, "csv", **settings))

    spec = spec_for(tmp_path / "parts", "tabular-classifier", dataset, "csv", **settings)
    first: Events = []
    train(spec, first.append, lambda: len(of_type(first, "progress")) >= 13)
    assert [e["step"] for e in of_type(first, "checkpoint")] == [5, 10, 13]
    assert first[-1] == {"type": "interrupted", "step": 13}
    checkpoints = Path(spec.work_dir) / "checkpoints"
    assert sorted(path.name for path in checkpoints.iterdir()) == ["step-10", "step-13"]

    resumed = run(
        msgspec.structs.replace(spec, resume_from=of_type(first, "checkpoint")[-1]["path"])
    )
    started = of_type(resumed, "started")[0]
    assert started["resumed_from_step"] == 13
    assert started["total_steps"] == of_type(whole, "started")[0]["total_steps"] == 30
    steps = [e["step"] for e in of_type(resumed, "progress")]
    assert steps == list(range(14, 31))
    assert of_type(resumed, "progress")[0]["epoch"] == 2  # steps 11-20 are the second epoch
    assert step_losses(first)[:13] + step_losses(resumed) == pytest.approx(step_losses(whole))
    final = [
        load_file(tmp_path / part / "work" / "model.safetensors") for part in ("whole", "parts")
    ]
    assert final[0].keys() == final[1].keys()
    assert all(torch.equal(final[0][name], final[1][name]) for name in final[0])


# -- the child process -------------------------------------------------------------------------


def write_spec(tmp_path: Path, spec: TrainingSpec) -> Path:
    path = tmp_path / "spec.json"
    path.write_bytes(msgspec.json.encode(spec))
    return path


def parse_lines(stdout: str) -> Events:
    """Every line of the child's stdout must be one JSON object."""
    return [json.loads(line) for line in stdout.splitlines()]


@pytest.mark.slow
def test_the_child_runs_under_accelerate_launch_and_its_model_generates(tmp_path: Path) -> None:
    dataset = write_corpus(tmp_path / "corpus.txt", characters=2_000)
    spec = spec_for(tmp_path, "char-lm", dataset, "text", epochs=2, seed=3, **TINY_GPT)
    child = subprocess.run(
        [*LAUNCH, "-m", "aiplatform.ml.trainer", str(write_spec(tmp_path, spec))],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    events = parse_lines(child.stdout)
    kinds = [event["type"] for event in events]
    assert kinds[1] == "started"
    assert kinds[-1] == "completed"
    assert events[1]["devices"] == ["cpu"]
    assert events[1]["num_processes"] == 1
    total = events[1]["total_steps"]
    assert [e["step"] for e in of_type(events, "progress")] == list(range(1, total + 1))
    assert all(e["samples_per_second"] > 0 for e in of_type(events, "progress"))
    assert [e["step"] for e in of_type(events, "checkpoint")] == [total]

    artifact = Path(events[-1]["artifact_path"])
    assert artifact == Path(spec.work_dir).resolve() / "model.safetensors"
    model = load_model(artifact)
    assert model.metadata["parameters"] == events[-1]["parameters"]
    pieces = list(generate(model, "the cat ", max_new_tokens=30, seed=11, top_k=5))
    assert pieces == list(generate(model, "the cat ", max_new_tokens=30, seed=11, top_k=5))
    assert 0 < len(pieces) <= 30  # a piece per byte at most: split characters come whole


def start_child(tmp_path: Path, spec: TrainingSpec) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "aiplatform.ml.trainer", str(write_spec(tmp_path, spec))],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_exits_75(tmp_path: Path) -> None:
    dataset = write_blobs(tmp_path / "blobs.csv")
    spec = spec_for(tmp_path, "tabular-classifier", dataset, "csv", epochs=1_000)
    child = start_child(tmp_path, spec)
    assert child.stdout is not None
    events: Events = []
    for line in child.stdout:
        events.append(json.loads(line))
        if events[-1]["type"] == "progress" and events[-1]["step"] == 3:
            os.kill(child.pid, signal.SIGTERM)
    assert child.wait(timeout=60) == EXIT_INTERRUPTED
    checkpoint, interrupted = events[-2:]
    assert checkpoint["type"] == "checkpoint"
    assert interrupted == {"type": "interrupted", "step": checkpoint["step"]}
    assert checkpoint["step"] == of_type(events, "progress")[-1]["step"] >= 3
    assert (Path(checkpoint["path"]) / "trainer_state.json").is_file()


@pytest.mark.slow
def test_a_failure_is_reported_as_an_error_line_and_exit_1(tmp_path: Path) -> None:
    dataset = write_blobs(tmp_path / "blobs.csv", label="target")
    child = start_child(tmp_path, spec_for(tmp_path, "tabular-classifier", dataset, "csv"))
    stdout, _ = child.communicate(timeout=60)
    assert child.returncode == EXIT_FAILED
    (error,) = parse_lines(stdout)
    assert error["type"] == "error"
    assert error["error"] == "DatasetError: row 1: `label` is missing"
    assert "load_training_data" in error["traceback"]


@pytest.mark.slow
def test_a_process_group_sigterm_under_accelerate_launch_still_reports_the_checkpoint(
    tmp_path: Path,
) -> None:
    """How a job is cancelled: SIGTERM to the launcher's whole process group. The launcher
    dies at once; the trainer, its orphan, still saves and reports its checkpoint."""
    dataset = write_blobs(tmp_path / "blobs.csv")
    spec = spec_for(tmp_path, "tabular-classifier", dataset, "csv", epochs=1_000)
    launcher = subprocess.Popen(
        [*LAUNCH, "-m", "aiplatform.ml.trainer", str(write_spec(tmp_path, spec))],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    assert launcher.stdout is not None
    try:
        read_until_training(launcher.stdout)
        os.killpg(launcher.pid, signal.SIGTERM)
        rest = parse_lines(launcher.communicate(timeout=60)[0])
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(launcher.pid, signal.SIGKILL)
    checkpoint, interrupted = rest[-2:]
    assert checkpoint["type"] == "checkpoint"
    assert interrupted == {"type": "interrupted", "step": checkpoint["step"]}


def read_until_training(stream: IO[str]) -> None:
    for line in stream:
        if json.loads(line)["type"] == "progress":
            return


@pytest.mark.slow
def test_a_closed_stdout_ends_the_child_at_once(tmp_path: Path) -> None:
    dataset = write_blobs(tmp_path / "blobs.csv")
    child = start_child(tmp_path, spec_for(tmp_path, "tabular-classifier", dataset, "csv"))
    assert child.stdout is not None
    read_until_training(child.stdout)
    child.stdout.close()  # as when the parent dies
    assert child.wait(timeout=30) == EXIT_PARENT_GONE


@pytest.mark.slow
def test_an_orphaned_child_exits(tmp_path: Path) -> None:
    dataset = write_blobs(tmp_path / "blobs.csv")
    spec = spec_for(tmp_path, "tabular-classifier", dataset, "csv", epochs=1_000)
    launcher = "import subprocess, sys; subprocess.run([sys.executable, '-m', *sys.argv[1:]])"
    parent = subprocess.Popen(
        [sys.executable, "-c", launcher, "aiplatform.ml.trainer", str(write_spec(tmp_path, spec))],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert parent.stdout is not None
    read_until_training(parent.stdout)
    (trainer,) = psutil.Process(parent.pid).children()
    parent.kill()  # no signal reaches the trainer: only its parent is gone
    try:
        # The pipe ends once its last writer, the orphaned trainer, has exited.
        assert '"completed"' not in parent.communicate(timeout=30)[0]
        # Its descriptors close as it exits; the process itself is gone a moment later.
        with contextlib.suppress(psutil.TimeoutExpired):
            trainer.wait(timeout=10)
        assert has_exited(trainer)
    finally:
        if not has_exited(trainer):
            trainer.kill()


def has_exited(process: psutil.Process) -> bool:
    """Gone, or a zombie that its new parent has not reaped yet."""
    try:
        return bool(process.status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def run_two_processes(tmp_path: Path, spec: TrainingSpec) -> Events:
    """The child on two CPU processes (gloo), as torchrun starts them for accelerate."""
    child = subprocess.run(
        [
            *(sys.executable, "-m", "torch.distributed.run", "--standalone"),
            *("--nproc_per_node", "2", "-m", "aiplatform.ml.trainer"),
            str(write_spec(tmp_path, spec)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"},
    )
    assert child.returncode == 0, child.stderr
    return parse_lines(child.stdout)


@pytest.mark.slow
def test_two_processes_share_the_epochs_and_resume_mid_epoch_alike(tmp_path: Path) -> None:
    dataset = write_blobs(tmp_path / "blobs.csv")
    settings = {"epochs": 3, "checkpoint_every": 4}
    whole_spec = spec_for(tmp_path / "whole", "tabular-classifier", dataset, "csv", **settings)
    whole = run_two_processes(tmp_path, whole_spec)

    (started,) = of_type(whole, "started")  # the main process speaks for both
    assert started["num_processes"] == 2
    # 320 training rows in batches of 64: 5 batches, 3 for one process and 2 (+1 repeated)
    # for the other.
    assert (started["steps_per_epoch"], started["total_steps"]) == (3, 9)
    assert [e["step"] for e in of_type(whole, "checkpoint")] == [4, 8, 9]
    assert validation(whole)[-1]["val_accuracy"] >= 0.8

    checkpoint = Path(whole_spec.work_dir) / "checkpoints" / "step-8"  # mid third epoch
    resumed_spec = spec_for(tmp_path / "resumed", "tabular-classifier", dataset, "csv", **settings)
    resumed_spec = msgspec.structs.replace(resumed_spec, resume_from=str(checkpoint))
    resumed = run_two_processes(tmp_path, resumed_spec)
    assert [e["step"] for e in of_type(resumed, "progress")] == [9]
    final = [load_file(Path(s.work_dir) / "model.safetensors") for s in (whole_spec, resumed_spec)]
    assert all(torch.equal(final[0][name], final[1][name]) for name in final[0])
