"""Root conftest: marks the project root as pytest's rootdir, so our tests never resolve to the
top-level ``tests`` package that verl's wheel installs into site-packages."""

import os

# Tests never reach a model hub; fail fast instead of waiting on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
