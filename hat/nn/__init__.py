"""Building blocks shared by the SuperTransformer and the compact Transformer."""
