"""Data: the toy task, sentencepiece, binarized datasets and token batching."""
