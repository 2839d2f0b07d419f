"""The autoencoder zoo. Every model subclasses `Autoencoder` and takes its sizes as arguments."""

from .base import Autoencoder
from .rnn_ae import RNNAutoencoder

__all__ = ["Autoencoder", "RNNAutoencoder"]
