"""Training: SuperTransformer (weight-shared, sampled SubTransformers) and compact models."""
