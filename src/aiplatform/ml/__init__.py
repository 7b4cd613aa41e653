"""Machine learning without the platform: templates, networks, data loading, the trainer child
process and model files. Imports torch, except `templates` (the API reads it)."""
