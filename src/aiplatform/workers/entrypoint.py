"""The module `dramatiq` loads in worker processes: broker first, then the actors."""

from aiplatform.config import load_settings
from aiplatform.observability.logs import configure_logging, log_format
from aiplatform.workers.broker import configure_broker

# `aiplatform worker` told Dramatiq to skip its own logging setup when JSON is asked for.
if log_format() == "json":
    configure_logging("json")
broker = configure_broker(load_settings())

from aiplatform.workers import actors  # noqa: E402,F401  (declared on the broker above)
from aiplatform.workers.training import StopTrainersOnShutdown  # noqa: E402

broker.add_middleware(StopTrainersOnShutdown())
