"""Reading NVIDIA GPUs through NVML.

Every function takes the NVML module as a parameter: the real `pynvml` (nvidia-ml-py) in the
workers, a fake with set values in the tests. Where NVML cannot start, `start_nvml` raises
`NvmlUnavailableError` with a reason a person can act on; once it has started, a reading that
one device does not support (power on many consumer cards) is None, never a failed sample.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from types import ModuleType
from typing import Any, TypeVar

import msgspec

T = TypeVar("T")

_MILLIWATTS_PER_WATT = 1000.0


class NvmlUnavailableError(Exception):
    """NVML could not be started on this host; the message says why."""


class GpuReading(msgspec.Struct, frozen=True, kw_only=True):
    """One device as NVML sees it. Units: utilization % (0-100, how busy the GPU was over the
    driver's last sample period), memory in bytes, temperature °C, power W. None where the
    device does not report the value."""

    index: int
    name: str | None
    uuid: str | None
    utilization: int | None
    memory_used: int | None
    memory_total: int | None
    temperature: int | None
    power_watts: float | None


def load_pynvml() -> ModuleType:
    try:
        import pynvml
    except ImportError:
        raise NvmlUnavailableError(
            "nvidia-ml-py is not installed on this worker (pip install nvidia-ml-py)"
        ) from None
    module: ModuleType = pynvml
    return module


def _is(error: BaseException, nvml: Any, class_name: str) -> bool:
    return isinstance(error, getattr(nvml, class_name, ()))


def unavailable_reason(error: BaseException, nvml: Any) -> str:
    """Why NVML could not start, in words that say what is missing."""
    if _is(error, nvml, "NVMLError_LibraryNotFound"):
        return (
            "NVML could not be loaded: libnvidia-ml.so.1 not found — no NVIDIA driver on this host"
        )
    if _is(error, nvml, "NVMLError_DriverNotLoaded"):
        return "NVML found no running NVIDIA driver on this host (is the kernel module loaded?)"
    if _is(error, nvml, "NVMLError_NoPermission"):
        return "NVML refused access to the GPUs: this worker lacks permission to read them"
    return f"NVML could not start: {error}"


def start_nvml(nvml: Any) -> int:
    """Initialises NVML and returns the number of GPUs; raises NvmlUnavailableError."""
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as error:
        raise NvmlUnavailableError(unavailable_reason(error, nvml)) from error
    try:
        return int(nvml.nvmlDeviceGetCount())
    except nvml.NVMLError as error:
        stop_nvml(nvml)
        raise NvmlUnavailableError(f"NVML could not count the GPUs: {error}") from error


def stop_nvml(nvml: Any) -> None:
    # Already shut down, or the driver went away: nothing is left to release.
    with suppress(nvml.NVMLError):
        nvml.nvmlShutdown()


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_gpus(nvml: Any) -> list[GpuReading]:
    """Every GPU NVML sees, in NVML's index order (call after `start_nvml`). Raises the
    module's NVMLError only when the devices cannot even be counted."""
    return [read_gpu(nvml, index) for index in range(int(nvml.nvmlDeviceGetCount()))]


def read_gpu(nvml: Any, index: int) -> GpuReading:
    def reading(read: Callable[[Any], T]) -> T | None:
        try:
            return read(handle)
        except nvml.NVMLError:
            return None

    try:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
    except nvml.NVMLError:  # a lost or inaccessible GPU still shows, with nothing read
        return GpuReading(
            index=index,
            name=None,
            uuid=None,
            utilization=None,
            memory_used=None,
            memory_total=None,
            temperature=None,
            power_watts=None,
        )
    memory = reading(nvml.nvmlDeviceGetMemoryInfo)
    power_mw = reading(nvml.nvmlDeviceGetPowerUsage)
    return GpuReading(
        index=index,
        name=reading(lambda h: _text(nvml.nvmlDeviceGetName(h))),
        uuid=reading(lambda h: _text(nvml.nvmlDeviceGetUUID(h))),
        utilization=reading(lambda h: int(nvml.nvmlDeviceGetUtilizationRates(h).gpu)),
        memory_used=int(memory.used) if memory is not None else None,
        memory_total=int(memory.total) if memory is not None else None,
        temperature=reading(
            lambda h: int(nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU))
        ),
        power_watts=power_mw / _MILLIWATTS_PER_WATT if power_mw is not None else None,
    )
