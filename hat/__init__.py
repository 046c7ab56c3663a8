"""hat: Hardware-Aware Transformers on a modern pure-PyTorch engine."""

__version__ = "0.1.0"
