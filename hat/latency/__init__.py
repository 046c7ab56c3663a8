"""On-device latency: measurement protocol, datasets, predictors.

measure: the latency protocol (one timing of one model); timing: a dataset's settings, runtimes
and reference interleaving; plan: which SubTransformers to time; rows: the CSV's columns and
rows; table: a dataset as arrays; dataset: collecting and re-checking a dataset; features,
predictor, training, metrics, fit: predictors, their recipes and evaluation.
"""
