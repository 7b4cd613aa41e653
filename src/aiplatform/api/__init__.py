"""The Litestar REST API under /api/v2."""
