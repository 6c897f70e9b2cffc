"""rlsf-verl: a verl plugin that turns a language model's own confidence into a training signal.

Importing the package is light (no verl, ray or transformers); the verl-facing parts load on use.
"""

__version__ = "0.1.0"
