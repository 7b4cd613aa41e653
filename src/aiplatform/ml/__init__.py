"""Machine learning: model artifacts (and, later, templates, the trainer and inference)."""
