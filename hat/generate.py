"""Batched beam search and greedy search with incremental decoding (KV cache).

Both work on any :class:`~hat.transformer.EncoderDecoder`: the compact Transformer, or a
SuperTransformer with a SubTransformer set. Scores are sums of token log-probabilities
(</s> included) divided by ``length ** len_penalty`` (fairseq's convention).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hat.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from hat.transformer import EncoderDecoder, EncoderOut

# Output length cap `a * source length + b`: fairseq's defaults, which HAT's test.sh uses too,
# so BLEU compares with theirs. The one place these defaults live.
MAX_LEN_A, MAX_LEN_B = 0.0, 200
MIN_LEN = 1  # fairseq's: </s> is never the first token, so no translation is empty


@dataclass
class Hypothesis:
    tokens: list[int]  # without the final </s>
    score: float  # length-normalized log-probability
    log_prob: float  # total log-probability, </s> included


def max_output_length(
    model: EncoderDecoder, src_tokens: torch.Tensor, max_len_a: float, max_len_b: int
) -> int:
    """`a * source length + b` tokens (before </s>), capped by the model's positions."""
    src_len = int(src_tokens.ne(PAD_ID).sum(dim=1).max())
    return max(
        1, min(int(max_len_a * src_len + max_len_b), model.settings.max_target_positions - 1)
    )


def _mask_specials(lprobs: torch.Tensor, step: int, max_len: int, min_len: int) -> None:
    lprobs[:, PAD_ID] = -torch.inf
    lprobs[:, BOS_ID] = -torch.inf
    if step >= max_len:  # out of room: only </s>
        eos = lprobs[:, EOS_ID].clone()
        lprobs.fill_(-torch.inf)
        lprobs[:, EOS_ID] = eos
    elif step < min_len:
        lprobs[:, EOS_ID] = -torch.inf


@torch.no_grad()
def beam_search(
    model: EncoderDecoder,
    src_tokens: torch.Tensor,
    beam: int = 5,
    max_len_a: float = MAX_LEN_A,
    max_len_b: int = MAX_LEN_B,
    len_penalty: float = 1.0,
    min_len: int = MIN_LEN,
    enc: EncoderOut | None = None,
) -> list[list[Hypothesis]]:
    """The `beam` best hypotheses of each source row of `src_tokens` (B, S), best first.

    Finished hypotheses (those that produced </s>) are never extended; a sentence stops
    when it has `beam` of them and leaves the batch. `enc`: the encoder output, when the
    caller has it already (latency timing measures the decoder alone that way).
    """
    # B sentences, K = beam, V = vocabulary, T = max_len; n = sentences still in the batch.
    # Decoder rows are sentence-major: row b * K + k is beam k of the b-th live sentence.
    bsz, device = src_tokens.shape[0], src_tokens.device
    max_len = max_output_length(model, src_tokens, max_len_a, max_len_b)
    enc = model.encode(src_tokens) if enc is None else enc
    # KV cache: one row per sentence for step 0 (a sentence's beams all start from </s>), then
    # fanned out to B*K rows
    state = model.start_decoding(enc, beam=1, max_steps=max_len + 1)
    tokens = torch.full((bsz * beam, max_len + 2), PAD_ID, dtype=torch.long, device=device)
    tokens[:, 0] = EOS_ID  # (B*K, T+2): </s> starts every target, as in fairseq
    cum = torch.zeros(bsz, beam, device=device)  # (n, K) summed log-probs
    cum[:, 1:] = -torch.inf  # all beams start identical: expand only the first at step 0
    finalized: list[list[Hypothesis]] = [[] for _ in range(bsz)]
    sentence_ids = list(range(bsz))  # row block -> sentence id
    offsets = torch.arange(2 * beam, device=device)  # (2K,)

    for step in range(max_len + 1):
        n = len(sentence_ids)
        # (n*K, V); (n, V) at step 0
        lprobs = model.decode_step(tokens[:: beam if step == 0 else 1, step], state)
        _mask_specials(lprobs, step, max_len, min_len)
        # 2K candidates: even if K of them are </s>, K others continue. A sentence's 2K best
        # are among its beams' 2K best each: only those get a score (no (n*K, V) sum).
        row_top, row_tok = lprobs.topk(2 * beam, dim=1)  # (n*K, 2K)
        if step == 0:  # one row per sentence was decoded: its beams get copies
            row_top, row_tok = (
                row_top.repeat_interleave(beam, 0),
                row_tok.repeat_interleave(beam, 0),
            )
            state.fan_out(beam)
        cand = (cum.view(-1, 1) + row_top).view(n, 2 * beam * beam)
        top_scores, top_idx = cand.topk(2 * beam, dim=1)  # (n, 2K)
        beam_idx = top_idx // (2 * beam)  # (n, 2K): source beam
        top_tok = row_tok.view(n, 2 * beam * beam).gather(1, top_idx)  # (n, 2K): token
        is_eos = top_tok.eq(EOS_ID) & top_scores.gt(-torch.inf)  # (n, 2K)

        # finalize </s> among the first `beam` candidates
        eos_rows = (is_eos[:, :beam]).nonzero().tolist()
        if eos_rows:
            scores_list, beam_list = top_scores.tolist(), beam_idx.tolist()
            for b, j in eos_rows:
                sid = sentence_ids[b]
                if len(finalized[sid]) < beam:
                    row = b * beam + beam_list[b][j]
                    log_prob = scores_list[b][j]
                    finalized[sid].append(
                        Hypothesis(
                            tokens[row, 1 : step + 1].tolist(),
                            log_prob / (step + 1) ** len_penalty,
                            log_prob,
                        )
                    )
        done = [len(finalized[sid]) >= beam for sid in sentence_ids]
        if all(done) or step == max_len:
            break

        # continue with the `beam` best candidates that are not </s>
        order = (is_eos.long() * 2 * beam + offsets).argsort(dim=1)[:, :beam]  # (n, K)
        cum = top_scores.gather(1, order)  # (n, K)
        # (n*K,) the decoder row each new beam extends
        rows = (beam_idx.gather(1, order) + torch.arange(n, device=device)[:, None] * beam).view(-1)
        next_tok = top_tok.gather(1, order).view(-1)  # (n*K,)
        keep = [b for b in range(n) if not done[b]]
        if len(keep) < n:
            keep_t = torch.tensor(keep, device=device)
            rows = rows.view(n, beam)[keep_t].view(-1)
            next_tok = next_tok.view(n, beam)[keep_t].view(-1)
            cum = cum[keep_t]
            sentence_ids = [sentence_ids[b] for b in keep]
        tokens = tokens.index_select(0, rows)  # (n'*K, T+2), n' = sentences kept
        tokens[:, step + 1] = next_tok
        state.reorder(rows, rows_changed=len(keep) < n)  # KV cache rows follow their beams

    return [sorted(h, key=lambda x: -x.score) for h in finalized]


@torch.no_grad()
def greedy_search(
    model: EncoderDecoder,
    src_tokens: torch.Tensor,
    max_len_a: float = MAX_LEN_A,
    max_len_b: int = MAX_LEN_B,
    len_penalty: float = 1.0,
    min_len: int = MIN_LEN,
) -> list[Hypothesis]:
    """Arg-max decoding, one hypothesis per source row."""
    bsz, device = src_tokens.shape[0], src_tokens.device
    max_len = max_output_length(model, src_tokens, max_len_a, max_len_b)
    state = model.start_decoding(model.encode(src_tokens), beam=1, max_steps=max_len + 1)
    last = torch.full((bsz,), EOS_ID, dtype=torch.long, device=device)
    out: list[list[int]] = [[] for _ in range(bsz)]
    log_probs = [0.0] * bsz
    finished = [False] * bsz
    for step in range(max_len + 1):
        lprobs = model.decode_step(last, state)
        _mask_specials(lprobs, step, max_len, min_len)
        best, last = lprobs.max(dim=1)
        for b, (tok, lp) in enumerate(zip(last.tolist(), best.tolist(), strict=False)):
            if finished[b]:
                continue
            log_probs[b] += lp
            if tok == EOS_ID:
                finished[b] = True
            else:
                out[b].append(tok)
        if all(finished):
            break
    return [
        Hypothesis(toks, lp / (len(toks) + 1) ** len_penalty, lp)
        for toks, lp in zip(out, log_probs, strict=False)
    ]
