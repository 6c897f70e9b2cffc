"""Hydra overlays shipped with the package, addressable as ``pkg://rlsf_verl.config``."""
