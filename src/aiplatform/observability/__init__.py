"""What operators see of a running platform: Prometheus metrics and structured logs."""
