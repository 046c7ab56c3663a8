"""On-device latency: measurement protocol, datasets, predictors."""
