"""augment-market: SAN person-image generation for Re-ID augmentation, as a Prefect DAG."""

__version__ = "0.1.0"
