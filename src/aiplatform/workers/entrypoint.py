"""The module `dramatiq` loads in worker processes: broker first, then the actors."""

from aiplatform.config import load_settings
from aiplatform.workers.broker import configure_broker

broker = configure_broker(load_settings())

from aiplatform.workers import actors  # noqa: E402,F401  (declared on the broker above)
