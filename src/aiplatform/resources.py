"""Where the SQL that ships with the platform lies: the repository root in a checkout, or
inside the package in an installed wheel (pyproject's force-include)."""

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def resource_dir(name: str) -> Path:
    """`name` is `migrations` or `projections`."""
    packaged = _PACKAGE_DIR / f"_{name}"
    if packaged.is_dir():
        return packaged
    checkout = _PACKAGE_DIR.parents[1] / name
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"the platform's {name} directory is missing from this installation")
