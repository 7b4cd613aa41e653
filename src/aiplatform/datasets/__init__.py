"""Dataset files: format detection, row counts and data-quality analysis, free of I/O services."""
