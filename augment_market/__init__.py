"""augment-market: SAN person-image generation for Re-ID augmentation, as a Prefect DAG."""

from foundation import __version__

__all__ = ["__version__"]
