"""Which job runs on which GPUs of this process: an in-process registry the training worker
fills, read by the monitor thread (which reports it in the worker's heartbeat, where the
host's GPU sampler finds it).

Devices are named as the training worker records them — `cuda:0`, `cuda:1`, `cpu`, or a bare
index. A CUDA ordinal counts only the GPUs in this process's `CUDA_VISIBLE_DEVICES`, so it is
mapped to what NVML knows: the listed index, or the listed `GPU-…`/`MIG-…` UUID. (CUDA and
NVML agree on plain indices when `CUDA_DEVICE_ORDER=PCI_BUS_ID`, which GPU clusters set.)
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping

import msgspec


class GpuRef(msgspec.Struct, frozen=True, kw_only=True):
    """A GPU as NVML names it on this host: by index, or by UUID."""

    index: int | None = None
    uuid: str | None = None

    def matches(self, index: int, uuid: str | None) -> bool:
        if self.uuid is not None:
            return self.uuid == uuid
        return self.index == index


class DeviceUse(msgspec.Struct, frozen=True, kw_only=True):
    """A GPU of this host and the job running on it."""

    index: int | None
    uuid: str | None
    job_id: str


_lock = threading.Lock()
_jobs: dict[GpuRef, str] = {}
_listeners: list[Callable[[], None]] = []


def gpu_ref(device: str | int, env: Mapping[str, str] | None = None) -> GpuRef | None:
    """The NVML device behind `cuda:N` (or `N`) in this process; None for `cpu`/`mps` and
    anything else that is no NVIDIA GPU."""
    name = str(device).strip()
    if name.startswith("cuda"):
        name = name.partition(":")[2] or "0"
    if not name.isdigit():
        return None
    ordinal = int(name)
    visible = (os.environ if env is None else env).get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return GpuRef(index=ordinal)
    listed = [entry.strip() for entry in visible.split(",") if entry.strip()]
    if ordinal >= len(listed):  # an empty list hides every GPU
        return None
    entry = listed[ordinal]
    return GpuRef(index=int(entry)) if entry.isdigit() else GpuRef(uuid=entry)


def gpu_refs(devices: Iterable[str | int]) -> list[GpuRef]:
    return [ref for ref in map(gpu_ref, devices) if ref is not None]


def assign(devices: Iterable[str | int], job_id: str) -> None:
    """Records that `job_id` now runs on `devices` (as in JobStarted: `["cuda:0", ...]`);
    devices that are no NVIDIA GPU are ignored. The monitor reports it at once."""
    with _lock:
        for ref in gpu_refs(devices):
            _jobs[ref] = job_id
    _notify()


def release(job_id: str) -> None:
    """Forgets every device `job_id` was assigned; safe to call more than once."""
    with _lock:
        for ref in [ref for ref, job in _jobs.items() if job == job_id]:
            del _jobs[ref]
    _notify()


def in_use() -> list[DeviceUse]:
    with _lock:
        return [DeviceUse(index=r.index, uuid=r.uuid, job_id=j) for r, j in _jobs.items()]


def on_change(listener: Callable[[], None]) -> Callable[[], None]:
    """Calls `listener` after every assign and release; returns what removes it."""
    with _lock:
        _listeners.append(listener)

    def remove() -> None:
        with _lock:
            if listener in _listeners:
                _listeners.remove(listener)

    return remove


def _notify() -> None:
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        listener()
