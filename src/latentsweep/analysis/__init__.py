"""Latent-space analysis of trained models (`python analyze.py`) and the latent-quality metrics.

- `latents`: encode every series once (latents + reconstruction errors), parquet export.
- `metrics`: clustering (spectral, k-means), NMI/ARI/silhouette, linear probe, raw-series features;
  shared with `latentsweep.objectives`.
- `labelfree`: scores that read no label (RankMe, trustworthiness, stability, silhouette at a
  data-chosen k): the `label_free` objective and the unlabelled analysis.
- `svm`: the RBF-SVM yardstick, TS2Vec's `fit_svm` rules (C from TRAIN only, accuracy on TEST).
- `report`: analysis figures and the latent-vs-raw markdown table.
- `run`: `analyze(cfg) -> dict`, the whole analysis logged as a nested MLflow run.

`run` is not imported here: the objectives import `latents`/`metrics` during training and should
not pull in the pipeline.
"""
