"""Translate a binarized split with beam search and score it with sacrebleu.

SacreBLEU is computed on detokenized text (sacrebleu's own 13a tokenization). HAT's
"normal" BLEU is tokenized BLEU: both sides tokenized (13a) and, for WMT En-De, hyphenated
compounds split as `a ##AT##-##AT## b` (the convention of HAT's and fairseq's WMT scores).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import sacrebleu
import torch
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
from tqdm import tqdm

from hat.data.batching import TokenBatcher
from hat.data.dataset import ParallelDataset
from hat.data.tokenizer import Tokenizer
from hat.fsutil import atomic_write
from hat.generate import MAX_LEN_A, MAX_LEN_B, beam_search, greedy_search
from hat.transformer import EncoderDecoder

_COMPOUND = re.compile(r"(\S)-(\S)")


@dataclass
class Translations:
    sources: list[str]
    hypotheses: list[str]
    references: list[str]
    seconds: float
    tokens: int = 0  # target tokens generated, </s> included

    @property
    def sentences_per_second(self) -> float:
        return len(self.hypotheses) / self.seconds if self.seconds else 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    @property
    def sacrebleu(self) -> float:
        return sacrebleu_score(self.hypotheses, self.references)

    def write(self, directory: str | Path, subset: str, source_lang: str, target_lang: str) -> None:
        """SUBSET.hyp.TGT, SUBSET.ref.TGT and SUBSET.src.SRC in `directory`, one line a pair."""
        for kind, lines, lang in (
            ("hyp", self.hypotheses, target_lang),
            ("ref", self.references, target_lang),
            ("src", self.sources, source_lang),
        ):
            with atomic_write(Path(directory) / f"{subset}.{kind}.{lang}") as f:
                f.writelines(line + "\n" for line in lines)


def sacrebleu_score(hypotheses: list[str], references: list[str]) -> float:
    """SacreBLEU (13a tokenization, detokenized input)."""
    return sacrebleu.corpus_bleu(hypotheses, [references]).score


def split_compounds(text: str) -> str:
    """'Know-how' -> 'Know ##AT##-##AT## how' (repeatedly, so 'a-b-c' splits twice)."""
    previous = None
    while previous != text:
        previous, text = text, _COMPOUND.sub(r"\1 ##AT##-##AT## \2", text)
    return text


def tokenized_bleu(
    hypotheses: list[str], references: list[str], compound_split: bool = False
) -> float:
    """HAT's "normal" BLEU: BLEU of 13a-tokenized text, compounds split for WMT."""
    tok = Tokenizer13a()

    def prep(s: str) -> str:
        s = tok(s)
        return split_compounds(s) if compound_split else s

    return sacrebleu.corpus_bleu(
        [prep(h) for h in hypotheses], [[prep(r) for r in references]], tokenize="none", force=True
    ).score


@torch.no_grad()
def translate_dataset(
    model: EncoderDecoder,
    dataset: ParallelDataset,
    tokenizer: Tokenizer,
    beam: int = 5,
    max_tokens: int = 4096,
    len_penalty: float = 1.0,
    max_len_a: float = MAX_LEN_A,
    max_len_b: int = MAX_LEN_B,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> Translations:
    """Translate every pair of `dataset` (in length-sorted batches), in the original order."""
    was_training = model.training
    model.eval()
    start = time.time()
    # a source longer than the model's positions cannot be encoded: the batcher reports it,
    # and its hypothesis stays empty (it still counts in BLEU)
    batches = TokenBatcher(
        dataset.src_sizes,
        dataset.src_sizes,
        max_tokens,
        max_positions=(model.settings.max_source_positions,) * 2,
        shuffle=False,
    ).batches(1)
    hyp_ids: dict[int, list[int]] = {}
    for indices in tqdm(
        batches, desc="translate", unit="batch", disable=not progress or None, leave=False
    ):
        batch = dataset.collate(indices.tolist())
        src = batch.src_tokens.to(device)
        if beam == 1:
            best = [h.tokens for h in greedy_search(model, src, max_len_a, max_len_b, len_penalty)]
        else:
            best = [
                hyps[0].tokens
                for hyps in beam_search(model, src, beam, max_len_a, max_len_b, len_penalty)
            ]
        hyp_ids.update(zip(indices.tolist(), best, strict=False))
    model.train(was_training)
    order = range(len(dataset))
    return Translations(
        sources=tokenizer.decode([dataset.src[i] for i in order]),
        hypotheses=tokenizer.decode([hyp_ids.get(i, []) for i in order]),
        references=tokenizer.decode([dataset.tgt[i] for i in order]),
        seconds=time.time() - start,
        tokens=sum(len(ids) + 1 for ids in hyp_ids.values()),
    )
