"""Serving trained models: the request/reply protocol and the worker's model cache."""
