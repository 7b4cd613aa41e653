"""A stand-in for the `pynvml` module (nvidia-ml-py), holding GPUs whose readings the test sets:
the one mock of the project, because NVML needs an NVIDIA driver and GPUs to say anything.

It exposes the functions the platform calls, with pynvml's units (memory in bytes, power in
milliwatts, temperature in °C, utilization in %), and pynvml's error classes. Like pynvml, it
refuses device calls before `nvmlInit` and after the matching `nvmlShutdown`. A test makes one
reading fail with `FakeGpu.failing` (function name -> the error it raises).
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field
from typing import Any

NVML_TEMPERATURE_GPU = 0


class NVMLError(Exception):
    code = 999
    text = "Unknown Error"

    def __init__(self) -> None:
        super().__init__(self.text)
        self.value = self.code

    def __str__(self) -> str:
        return self.text


class NVMLError_Uninitialized(NVMLError):  # pynvml names its errors so
    code, text = 1, "Uninitialized"


class NVMLError_NotSupported(NVMLError):
    code, text = 3, "Not Supported"


class NVMLError_NoPermission(NVMLError):
    code, text = 4, "Insufficient Permissions"


class NVMLError_DriverNotLoaded(NVMLError):
    code, text = 9, "Driver Not Loaded"


class NVMLError_LibraryNotFound(NVMLError):
    code, text = 12, "NVML Shared Library Not Found"


class NVMLError_GpuIsLost(NVMLError):
    code, text = 15, "GPU is lost"


@dataclass
class FakeGpu:
    name: str
    uuid: str
    utilization: int  # %
    memory_used: int  # bytes
    memory_total: int  # bytes
    temperature: int  # °C
    power_mw: int  # milliwatts, as NVML reports power
    failing: dict[str, NVMLError] = field(default_factory=dict)


@dataclass(frozen=True)
class _Utilization:
    gpu: int
    memory: int


@dataclass(frozen=True)
class _Memory:
    total: int
    used: int
    free: int


class FakeNvml(types.ModuleType):
    """A module object: pass it wherever the platform takes the NVML module."""

    NVML_TEMPERATURE_GPU = NVML_TEMPERATURE_GPU
    NVMLError = NVMLError
    NVMLError_Uninitialized = NVMLError_Uninitialized
    NVMLError_NotSupported = NVMLError_NotSupported
    NVMLError_NoPermission = NVMLError_NoPermission
    NVMLError_DriverNotLoaded = NVMLError_DriverNotLoaded
    NVMLError_LibraryNotFound = NVMLError_LibraryNotFound
    NVMLError_GpuIsLost = NVMLError_GpuIsLost

    def __init__(self, gpus: list[FakeGpu], init_error: NVMLError | None = None):
        super().__init__("pynvml")
        self.gpus = gpus
        self.init_error = init_error
        self.init_calls = 0
        self.initialised = 0

    def nvmlInit(self) -> None:
        self.init_calls += 1
        if self.init_error is not None:
            raise self.init_error
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        self._require_init()
        self.initialised -= 1

    def nvmlDeviceGetCount(self) -> int:
        self._require_init()
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        self._require_init()
        gpu = self.gpus[index]
        self._maybe_fail(gpu, "nvmlDeviceGetHandleByIndex")
        return gpu

    def nvmlDeviceGetName(self, handle: FakeGpu) -> str:
        return self._read(handle, "nvmlDeviceGetName", handle.name)

    def nvmlDeviceGetUUID(self, handle: FakeGpu) -> str:
        return self._read(handle, "nvmlDeviceGetUUID", handle.uuid)

    def nvmlDeviceGetUtilizationRates(self, handle: FakeGpu) -> _Utilization:
        return self._read(
            handle, "nvmlDeviceGetUtilizationRates", _Utilization(gpu=handle.utilization, memory=0)
        )

    def nvmlDeviceGetMemoryInfo(self, handle: FakeGpu) -> _Memory:
        memory = _Memory(
            total=handle.memory_total,
            used=handle.memory_used,
            free=handle.memory_total - handle.memory_used,
        )
        return self._read(handle, "nvmlDeviceGetMemoryInfo", memory)

    def nvmlDeviceGetTemperature(self, handle: FakeGpu, sensor: int) -> int:
        assert sensor == NVML_TEMPERATURE_GPU, sensor
        return self._read(handle, "nvmlDeviceGetTemperature", handle.temperature)

    def nvmlDeviceGetPowerUsage(self, handle: FakeGpu) -> int:
        return self._read(handle, "nvmlDeviceGetPowerUsage", handle.power_mw)

    def _read(self, handle: FakeGpu, function: str, value: Any) -> Any:
        self._require_init()
        self._maybe_fail(handle, function)
        return value

    def _require_init(self) -> None:
        if self.initialised <= 0:
            raise NVMLError_Uninitialized()

    @staticmethod
    def _maybe_fail(gpu: FakeGpu, function: str) -> None:
        error = gpu.failing.get(function)
        if error is not None:
            raise error
