"""Latent-space analysis of a trained model: `python analyze.py [run=<MLflow run id>] [k=...]`.

A thin Hydra entry point over `latentsweep.analysis.run.analyze(cfg)`; prints the latent-vs-raw
table and logs figures, metrics and the latents parquet as a run nested under the analysed run.
"""

import hydra
from omegaconf import DictConfig

from latentsweep.analysis.run import analyze
from latentsweep.cli import friendly_errors


@hydra.main(config_path="conf", config_name="analyze")
@friendly_errors
def main(cfg: DictConfig) -> None:
    result = analyze(cfg)
    print(result["summary"])
    print(f"MLflow: analysis run {result['analysis_run_id']} nested under {result['analyzed_run_id']} "
          f"({result['tracking_uri']}); latents in artifact {result['latents_artifact']}; "
          f"{result['metrics']['time.total_s']:.1f} s")


if __name__ == "__main__":
    main()
