"""unimedi-monai: UniMedI unified 2D/3D medical vision-language pre-training for MONAI."""

__version__ = "0.1.0"
