"""Train one autoencoder, or sweep many: `python train.py [-m] [group=option] [key=value]`.

A thin Hydra entry point over `latentsweep.pipeline.train(cfg)`; see README.md.
"""

import hydra
from omegaconf import DictConfig

from latentsweep.cli import friendly_errors
from latentsweep.config import register_configs
from latentsweep.pipeline import train

register_configs()


@hydra.main(config_path="conf", config_name="train")
@friendly_errors
def main(cfg: DictConfig) -> float:
    if cfg.sweep.trial_id is None:  # a single run: no Optuna trial (and no optuna import)
        return train(cfg)
    from latentsweep.sweeps.trial import TrialJob

    job = TrialJob(cfg)
    return train(cfg, callbacks=job.callbacks, improves=job.beats_finished_trials)


if __name__ == "__main__":
    main()
