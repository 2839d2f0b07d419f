"""latentsweep: which autoencoder, with which sizes, gives a good latent space?

Layout:
    config/    structured-config schemas (validated at start-up) and their registration
    data/      data sources, normalisation, splits, length-bucketed batching
    models/    the autoencoder zoo; pure PyTorch, knows nothing of Hydra or MLflow
    training/  the model-agnostic training loop, checkpoints, device choice
    tasks/     what a run trains for (reconstruct, classify), task.pretrained
    tracking/  everything MLflow: store, run tracker, queries, sweep parent runs, registry
    sweeps/    the Optuna sweeper (found by Hydra as hydra_plugins.latentsweep_sweeper)
    analysis/  latent-space analysis of a trained model
    figures    matplotlib figures logged by tracking
    pipeline   `train(cfg) -> float`: glue between config, data, model, loop and tracking

docs/architecture.md says what each layer may import.
"""

__version__ = "0.1.0"
