"""Where a training run stands, saved next to the Accelerator's state so a run can resume
mid-epoch: `work_dir/checkpoints/step-<global step>/`, of which the two newest are kept."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Final

import msgspec
from accelerate import Accelerator

KEPT: Final = 2
STATE_FILE: Final = "trainer_state.json"
_PREFIX: Final = "step-"


class CheckpointError(ValueError):
    pass


class Position(msgspec.Struct, frozen=True, kw_only=True):
    """`epoch` counts from 0; `step_in_epoch` optimizer steps of it are done (it may equal
    `steps_per_epoch`: the epoch's training is over, its evaluation not yet done)."""

    template: str
    epoch: int
    step_in_epoch: int
    global_step: int
    steps_per_epoch: int
    num_processes: int
    seed: int


def save_checkpoint(accelerator: Accelerator, work_dir: Path, position: Position) -> Path:
    """Saves the model, optimizer and RNG states, then the position, written last: a directory
    without it is an incomplete checkpoint."""
    directory = (work_dir / "checkpoints" / f"{_PREFIX}{position.global_step}").resolve()
    accelerator.save_state(str(directory))
    if accelerator.is_main_process:
        partial = directory / (STATE_FILE + ".partial")
        partial.write_bytes(msgspec.json.encode(position))
        os.replace(partial, directory / STATE_FILE)
        _prune(directory.parent)
    accelerator.wait_for_everyone()
    return directory


def load_checkpoint(accelerator: Accelerator, directory: Path, template: str) -> Position:
    try:
        position = msgspec.json.decode((directory / STATE_FILE).read_bytes(), type=Position)
    except FileNotFoundError:
        raise CheckpointError(
            f"{directory} is not a complete checkpoint: it has no {STATE_FILE}"
        ) from None
    if position.template != template:
        raise CheckpointError(
            f"the checkpoint {directory} is of a {position.template}, not a {template}"
        )
    accelerator.load_state(str(directory))
    return position


def _prune(checkpoints: Path) -> None:
    def step(path: Path) -> int:
        return int(path.name.removeprefix(_PREFIX))

    saved = [
        path
        for path in checkpoints.iterdir()
        if path.name.startswith(_PREFIX) and path.name.removeprefix(_PREFIX).isdigit()
    ]
    for old in sorted(saved, key=step)[:-KEPT]:
        shutil.rmtree(old, ignore_errors=True)
