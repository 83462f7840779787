"""MONAI Label support: serving the project's bundles with MONAI Label's ``monaibundle`` app.

Kept import-light: ``torchvision_cpu`` is imported at interpreter start in the MONAI Label
environment (see ``scripts/setup_label_env.sh``).
"""
