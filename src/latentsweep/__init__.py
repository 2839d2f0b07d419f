"""latentsweep: which autoencoder, with which sizes, gives a good latent space?

Layout:
    config/    structured-config schemas (validated at start-up) and their registration
    data/      data sources, normalisation, splits, length-bucketed batching
    models/    the autoencoder zoo; pure PyTorch, knows nothing of Hydra or MLflow
    training/  the model-agnostic training loop, checkpoints, device choice
    tracking   everything MLflow, in one module
    figures    matplotlib figures logged by tracking
    pipeline   `train(cfg) -> float`: glue between config, data, model, loop and tracking
"""

__version__ = "0.1.0"
