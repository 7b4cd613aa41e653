"""The module `dramatiq` loads in worker processes: broker first, then the actors."""

from aiplatform.config import load_settings
from aiplatform.observability.logs import log_format, reformat_handlers
from aiplatform.workers.broker import configure_broker

# Dramatiq has set up this process's logging before it imports us: keep it, in our format.
reformat_handlers(log_format())
broker = configure_broker(load_settings())

from aiplatform.workers import actors  # noqa: E402,F401  (declared on the broker above)
from aiplatform.workers.training import StopTrainersOnShutdown  # noqa: E402

broker.add_middleware(StopTrainersOnShutdown())
