"""Search for SubTransformers under latency budgets: HAT's evolution, NSGA-II Pareto search."""
