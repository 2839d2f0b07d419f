"""Train one autoencoder, or sweep many: `python train.py [-m] [group=option] [key=value]`.

A thin Hydra entry point over `latentsweep.pipeline.train(cfg)`; see README.md.
"""

import hydra
from omegaconf import DictConfig

from latentsweep.cli import friendly_errors
from latentsweep.config import register_configs
from latentsweep.pipeline import train
from latentsweep.sweeps.trial import trial_job

register_configs()


@hydra.main(config_path="conf", config_name="train")
@friendly_errors
def main(cfg: DictConfig) -> float:
    job = trial_job(cfg)  # None in a single run
    if job is None:
        return train(cfg)
    return train(cfg, callbacks=job.callbacks, improves=job.beats_finished_trials)


if __name__ == "__main__":
    main()
