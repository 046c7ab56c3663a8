"""Beam and greedy search with incremental decoding."""

import contextlib
import copy
import random

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_space

from hat.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from hat.generate import beam_search, greedy_search
from hat.nn.attention import KVCache, MultiheadAttention
from hat.supernet import SuperTransformer
from hat.transformer import ModelSettings

VOCAB = 24


def reverse_batch(g: torch.Generator, n: int):
    """Sources of 2-8 tokens; targets are the reversed sources (a task a tiny model learns)."""
    lengths = torch.randint(2, 9, (n,), generator=g)
    src = torch.full((n, 9), PAD_ID)
    prev = torch.full((n, 10), PAD_ID)
    tgt = torch.full((n, 10), PAD_ID)
    for i, ln in enumerate(lengths.tolist()):
        seq = torch.randint(4, VOCAB, (ln,), generator=g)
        src[i, :ln], src[i, ln] = seq, EOS_ID
        rev = seq.flip(0)
        prev[i, 0], prev[i, 1 : ln + 1] = EOS_ID, rev
        tgt[i, :ln], tgt[i, ln] = rev, EOS_ID
    return src, prev, tgt


@pytest.fixture(scope="module")
def trained():
    """A SuperTransformer trained briefly on string reversal, and its smallest-but-one config."""
    torch.manual_seed(0)
    space = tiny_space()
    net = SuperTransformer(space, ModelSettings(vocab_size=VOCAB, qkv_dim=32, dropout=0.0))
    cfg = space.sample(random.Random(5))
    net.set_config(cfg)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(400):  # 250 left it at the edge of 4 correct, by thread count
        src, prev, tgt = reverse_batch(g, 32)
        loss = F.cross_entropy(net(src, prev).transpose(1, 2), tgt, ignore_index=PAD_ID)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    src, _, tgt = reverse_batch(torch.Generator().manual_seed(99), 8)
    return net, net.export().eval(), src, tgt


def test_the_model_learned_enough_for_eos_to_matter(trained):
    _, compact, src, tgt = trained
    hyps = greedy_search(compact, src, max_len_b=12)
    lengths = [len(h.tokens) for h in hyps]
    assert lengths != [12] * len(lengths)  # it stops by itself
    correct = sum(
        h.tokens == [t for t in row.tolist() if t not in (PAD_ID, EOS_ID)]
        for h, row in zip(hyps, tgt, strict=False)
    )
    assert correct >= 4


def test_beam_one_equals_greedy(trained):
    _, compact, src, _ = trained
    greedy = greedy_search(compact, src, max_len_b=12)
    beam = beam_search(compact, src, beam=1, max_len_b=12)
    for g, b in zip(greedy, beam, strict=False):
        assert g.tokens == b[0].tokens
        assert g.score == pytest.approx(b[0].score, abs=1e-5)


def test_batched_equals_one_by_one(trained):
    _, compact, src, _ = trained
    together = beam_search(compact, src, beam=4, max_len_b=12)
    for i in range(len(src)):
        row = src[i : i + 1]
        row = row[:, : int(row.ne(PAD_ID).sum())]  # no padding at all when alone
        alone = beam_search(compact, row, beam=4, max_len_b=12)[0]
        assert [h.tokens for h in alone] == [h.tokens for h in together[i]]
        assert [h.score for h in alone] == pytest.approx([h.score for h in together[i]], abs=1e-4)


@contextlib.contextmanager
def decode_steps_of(model):
    """Records (step, tokens fed) of every `model.decode_step` call made inside the block."""
    fed = []
    original = model.decode_step

    def spy(tokens, state):
        fed.append((state.step, tokens.clone()))
        return original(tokens, state)

    model.decode_step = spy
    try:
        yield fed
    finally:
        del model.decode_step


def test_finished_hypotheses_are_never_extended(trained):
    _, compact, src, _ = trained
    with decode_steps_of(compact) as fed:
        results = beam_search(compact, src, beam=5, max_len_b=12)
    assert all(not (tokens == EOS_ID).any() for step, tokens in fed if step > 0)
    for hyps in results:
        assert len(hyps) == 5
        assert all(EOS_ID not in h.tokens and len(h.tokens) <= 12 for h in hyps)
        assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)


def test_step_zero_decodes_one_row_per_sentence_then_one_per_beam(trained):
    """A sentence's beams all start from </s>: step 0 decodes it once, then the cache fans out
    (the search by the book and batched-vs-alone tests show the fanned-out rows are right)."""
    _, compact, src, _ = trained
    with decode_steps_of(compact) as fed:
        beam_search(compact, src, beam=4, max_len_b=12)
    rows = [tokens.shape[0] for _, tokens in fed]
    assert rows[:2] == [len(src), 4 * len(src)]


def test_scores_equal_full_recomputation(trained):
    _, compact, src, _ = trained
    results = beam_search(compact, src[:3], beam=3, max_len_b=12)
    for i, hyps in enumerate(results):
        for h in hyps:
            target = torch.tensor([h.tokens + [EOS_ID]])
            prev = torch.tensor([[EOS_ID] + h.tokens])
            with torch.no_grad():
                lprobs = torch.log_softmax(compact(src[i : i + 1], prev), -1)
            assert lprobs.gather(2, target[..., None]).sum().item() == pytest.approx(
                h.log_prob, abs=1e-4
            )
            assert h.score == pytest.approx(h.log_prob / (len(h.tokens) + 1), abs=1e-5)


def naive_beam_search(model, src: torch.Tensor, beam: int, max_len: int) -> list[tuple]:
    """Beam search by the book for one sentence (1, S): every hypothesis rescored by a full
    forward pass, every (hypothesis, token) candidate ranked; </s> among the `beam` best
    finishes a hypothesis, the `beam` best others continue. [(tokens, log_prob)], best first."""
    alive, finished = [([], 0.0)], []
    for step in range(max_len + 1):
        cands = []
        for tokens, log_prob in alive:
            with torch.no_grad():
                lprobs = torch.log_softmax(model(src, torch.tensor([[EOS_ID, *tokens]]))[0, -1], -1)
            lprobs[PAD_ID] = lprobs[BOS_ID] = -torch.inf
            if step == 0:
                lprobs[EOS_ID] = -torch.inf
            if step == max_len:
                lprobs[torch.arange(len(lprobs)) != EOS_ID] = -torch.inf
            cands += [(log_prob + lp, tokens, v) for v, lp in enumerate(lprobs.tolist())]
        cands.sort(key=lambda c: -c[0])
        for score, tokens, v in cands[:beam]:
            if v == EOS_ID and score > -torch.inf and len(finished) < beam:
                finished.append((tokens, score))
        if len(finished) >= beam or step == max_len:
            break
        alive = [(tokens + [v], score) for score, tokens, v in cands[: 2 * beam] if v != EOS_ID]
        alive = alive[:beam]
    return sorted(finished, key=lambda f: -f[1] / (len(f[0]) + 1))


def test_beam_search_equals_beam_search_by_the_book(trained):
    """The batched search (a sentence's beams share its encoder keys/values, each beam offers
    only its own 2K best tokens) finds exactly the hypotheses of the textbook algorithm."""
    _, compact, src, _ = trained
    results = beam_search(compact, src[:4], beam=3, max_len_b=7)
    for i, hyps in enumerate(results):
        row = src[i : i + 1, : int(src[i].ne(PAD_ID).sum())]
        expected = naive_beam_search(compact, row, beam=3, max_len=7)
        assert [h.tokens for h in hyps] == [tokens for tokens, _ in expected]
        assert [h.log_prob for h in hyps] == pytest.approx([lp for _, lp in expected], abs=1e-4)


def test_cross_attention_shares_a_sentences_keys_among_its_beams():
    """Decoding queries of `beam` rows per sentence attend to one row of keys/values per
    sentence exactly as to those keys/values repeated for every beam."""
    torch.manual_seed(0)
    attn = MultiheadAttention(16, 16, 4, kv_dim=12).eval()
    memory, x = torch.randn(3, 5, 12), torch.randn(3 * 4, 1, 16)
    padding = torch.tensor([[False] * 5, [False] * 3 + [True] * 2, [False] * 4 + [True]])
    k, v = attn.project_kv(memory)
    with torch.no_grad():
        shared = attn.cross(x, (k, v), padding)
        repeated = attn.cross(
            x,
            (k.repeat_interleave(4, 0), v.repeat_interleave(4, 0)),
            padding.repeat_interleave(4, 0),
        )
    assert shared.shape == (12, 1, 16)
    assert torch.allclose(shared, repeated, atol=1e-6)


def test_supernet_with_config_decodes_like_its_export(trained):
    net, compact, src, _ = trained
    a = beam_search(net, src, beam=5, max_len_b=12)
    b = beam_search(compact, src, beam=5, max_len_b=12)
    assert [[h.tokens for h in hyps] for hyps in a] == [[h.tokens for h in hyps] for hyps in b]


def test_max_length_is_a_times_source_plus_b(trained):
    _, compact, src, _ = trained
    for hyps in beam_search(compact, src, beam=2, max_len_a=0.0, max_len_b=2):
        assert all(len(h.tokens) <= 2 for h in hyps)
    hyps = greedy_search(compact, src, max_len_a=0.5, max_len_b=0, min_len=4)
    limit = int(0.5 * int(src.ne(PAD_ID).sum(1).max()))
    assert all(min(4, limit) <= len(h.tokens) <= limit for h in hyps)


def test_bleu_length_cap_defaults_are_fairseqs():
    """BLEU everywhere uses fairseq's / HAT test.sh's length cap (max-len-a 0, max-len-b 200)."""
    import inspect

    from hat.cli.generate import build_parser
    from hat.evaluate import translate_dataset

    params = inspect.signature(translate_dataset).parameters
    assert (params["max_len_a"].default, params["max_len_b"].default) == (0, 200)
    args = build_parser().parse_args(["--data", "d", "--path", "p"])
    assert (args.max_len_a, args.max_len_b) == (0, 200)


def test_kv_cache_grows_and_reorders_only_what_was_written():
    """Buffers double from `initial` steps up to the capacity; after any sequence of appends
    and beam reorders (rows dropped included) the cache holds the reordered past exactly."""
    cache = KVCache(capacity=9, initial=2)
    g = torch.Generator().manual_seed(0)
    past: list[torch.Tensor] = []
    for step, rows in enumerate([4, 4, 4, 3, 3, 2, 2, 2, 2]):
        if past and past[0].shape[0] != rows:  # sentences left the batch
            keep = torch.arange(rows)
        else:
            keep = torch.randperm(rows, generator=g)
        if past:
            cache.reorder(keep)
            past = [x[keep] for x in past]
        k = torch.randn(rows, 2, 1, 3, generator=g)
        past.append(k)
        keys, values = cache.append(k, -k)
        assert torch.equal(keys, torch.cat(past, dim=2)) and torch.equal(values, -keys)
        assert cache.k.shape[2] == min(9, max(2, 1 << (step).bit_length())), step
    with pytest.raises(ValueError, match="9 steps is full"):
        cache.append(k, k)


def test_no_translation_is_empty(trained):
    """fairseq's minimum length: </s> is never the first token, even where it is the best."""
    compact = copy.deepcopy(trained[1])
    src = trained[2]
    bias = torch.zeros(VOCAB)
    bias[EOS_ID] = 1e4  # a model that wants to stop at once
    output_layer = compact.output_layer
    compact.output_layer = lambda x: output_layer(x) + bias
    for hyps in beam_search(compact, src, beam=3, max_len_b=5):
        assert all(h.tokens for h in hyps)
    assert all(h.tokens for h in greedy_search(compact, src, max_len_b=5))
    assert not any(h.tokens for h in greedy_search(compact, src, max_len_b=5, min_len=0))
