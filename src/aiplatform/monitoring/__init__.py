"""What the machines running the platform are doing: each worker process's CPU and memory, and
every host's NVIDIA GPUs read through NVML.

Worker processes write it to Redis (`aiplatform.workers.monitoring`), the API reads it back
(`GET /api/v2/gpu/status`), and a finished job's GPU usage is summarised from the history
(`usage.gpu_usage`). The training worker says which job runs on which GPUs with
`devices.assign` and `devices.release`.
"""
