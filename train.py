"""Train one autoencoder, or sweep many: `python train.py [-m] [group=option] [key=value]`.

A thin Hydra entry point over `latentsweep.pipeline.train(cfg)`; see README.md.
"""

import hydra
from omegaconf import DictConfig

from latentsweep.cli import friendly_errors
from latentsweep.config import register_configs
from latentsweep.pipeline import train
from latentsweep.sweeps.trial import beats_finished_trials, sweep_callbacks

register_configs()


@hydra.main(config_path="conf", config_name="train")
@friendly_errors
def main(cfg: DictConfig) -> float:
    return train(cfg, callbacks=sweep_callbacks(cfg), improves=beats_finished_trials(cfg))


if __name__ == "__main__":
    main()
