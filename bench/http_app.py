"""The API as the HTTP benchmark serves it: `uvicorn --factory http_app:create_app_from_env`,
configured from the AIPLATFORM_* environment like a deployed server."""

from __future__ import annotations

from litestar import Litestar

from aiplatform.api.app import create_app
from aiplatform.config import load_settings


def create_app_from_env() -> Litestar:
    return create_app(load_settings())
