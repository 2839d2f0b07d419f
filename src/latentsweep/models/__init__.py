"""The autoencoder zoo. Every model subclasses `Autoencoder` and takes its sizes as arguments."""

from .base import Autoencoder
from .conv_ae import ConvAutoencoder
from .highway_ae import HighwayAutoencoder, HighwayLayer
from .mlp_ae import MLPAutoencoder, halving_widths
from .rnn_ae import RNNAutoencoder
from .transformer_ae import TransformerAutoencoder
from .vrae import VRAE

__all__ = ["VRAE", "Autoencoder", "ConvAutoencoder", "HighwayAutoencoder", "HighwayLayer", "MLPAutoencoder",
           "RNNAutoencoder", "TransformerAutoencoder", "halving_widths"]
