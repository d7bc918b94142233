"""Properties of the whole encoder-decoder: causality, padding invariance, structure."""

import math

import pytest
import torch

from transformer_cli.data.batching import Batch, pad_sequences, source_tensor
from transformer_cli.decode import beam_search, greedy_decode, greedy_decode_reference
from transformer_cli.model import ModelConfig, Transformer
from transformer_cli.model.layers import PositionalEncoding, sinusoidal_positions

VOCAB = 24


VARIANTS = {
    "paper": {"attention": "explicit"},  # post-norm, sinusoidal positions, untied
    "fused": {"attention": "fused"},
    "pre-norm": {"norm": "pre"},
    "tied-decoder": {"tie_embeddings": "decoder"},
    "tied-all+learned": {"tie_embeddings": "all", "positional": "learned", "max_positions": 64},
}


def make_model(vocab: int = VOCAB, **options: object) -> Transformer:
    torch.manual_seed(0)
    config = ModelConfig(
        d_model=32, n_heads=4, n_encoder_layers=2, n_decoder_layers=2, d_ff=64, dropout=0.0,
        **options,
    )  # fmt: skip
    model = Transformer(config, vocab, vocab).eval()
    for name, param in model.named_parameters():
        if "norm" in name:  # move LayerNorms off their (1, 0) init so that they matter
            torch.nn.init.normal_(param, mean=float(name.endswith("weight")), std=0.2)
    return model


@pytest.fixture(params=list(VARIANTS), ids=list(VARIANTS))
def model(request) -> Transformer:
    return make_model(**VARIANTS[request.param])


def _random_ids(length: int, generator: torch.Generator) -> list[int]:
    return torch.randint(4, VOCAB, (length,), generator=generator).tolist()  # no special ids


def test_changing_later_target_tokens_never_changes_earlier_outputs(model):
    gen = torch.Generator().manual_seed(1)
    src = source_tensor([_random_ids(6, gen)])
    tgt = torch.tensor([[2, *_random_ids(7, gen)]])  # BOS + 7 tokens
    logits = model(src, tgt)
    for t in range(tgt.size(1) - 1):
        changed = tgt.clone()
        changed[0, t + 1 :] = torch.tensor(_random_ids(tgt.size(1) - t - 1, gen))
        changed_logits = model(src, changed)
        torch.testing.assert_close(
            changed_logits[0, : t + 1], logits[0, : t + 1], atol=1e-6, rtol=0
        )
        # and the check can fail: the changed positions do move
        assert not torch.allclose(changed_logits[0, t + 1 :], logits[0, t + 1 :])


def test_padding_leaves_logits_at_real_positions_unchanged(model):
    gen = torch.Generator().manual_seed(2)
    src, tgt = _random_ids(5, gen), _random_ids(4, gen)
    alone = Batch.from_ids([src], [tgt])
    # Longer batch-mates force PAD after our sentence on both sides.
    padded = Batch.from_ids([src, _random_ids(11, gen)], [tgt, _random_ids(9, gen)])
    assert (padded.src[0] == 0).sum() == 6 and (padded.tgt_in[0] == 0).sum() == 5
    alone_logits = model(alone.src, alone.tgt_in)[0]
    padded_logits = model(padded.src, padded.tgt_in)[0, : alone.tgt_in.size(1)]
    torch.testing.assert_close(padded_logits, alone_logits, atol=1e-5, rtol=0)


def test_padding_leaves_greedy_translation_unchanged(model):
    gen = torch.Generator().manual_seed(3)
    sentences = [_random_ids(n, gen) for n in (3, 9, 5, 14)]
    alone = [greedy_decode(model, source_tensor([s]), 1.0, 6)[0].tokens for s in sentences]
    together = [h.tokens for h in greedy_decode(model, source_tensor(sentences), 1.0, 6)]
    assert together == alone
    assert any(len(out) > 2 for out in alone)  # an untrained model still says something


def test_decoder_has_separate_self_and_cross_attention(model):
    for layer in model.decoder_layers:
        assert layer.tgt_tgt_attn is not layer.src_tgt_attn
    storages = [p.data_ptr() for p in model.parameters()]
    assert len(storages) == len(set(storages))  # no two parameters share memory


def test_forward_returns_unnormalised_logits(model):
    src = source_tensor([[5, 6, 7]])
    tgt = torch.tensor([[2, 8, 9]])
    logits = model(src, tgt)
    with torch.no_grad():
        model.output_proj.bias += 5.0  # a softmax would cancel a constant shift; logits keep it
    torch.testing.assert_close(model(src, tgt), logits + 5.0)


def test_sinusoidal_positions_match_the_paper_formula():
    d_model = 8
    table = sinusoidal_positions(6, d_model)
    for pos in range(6):
        for i in range(d_model // 2):
            angle = pos / 10000 ** (2 * i / d_model)
            assert table[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_positional_encoding_extends_past_its_initial_table():
    encoding = PositionalEncoding(d_model=4, initial_length=3)
    out = encoding(torch.zeros(1, 10, 4))
    torch.testing.assert_close(out[0], sinusoidal_positions(10, 4))


def test_pad_embedding_is_zero_and_padding_is_right_aligned(model):
    assert model.src_embed.weight[0].abs().max() == 0
    assert pad_sequences([[5], [5, 6, 7]]).tolist() == [[5, 0, 0], [5, 6, 7]]


@pytest.mark.parametrize("capacity", [9, 3])  # 3: the self-attention caches must grow
def test_cached_step_by_step_logits_equal_full_recompute(model, capacity):
    gen = torch.Generator().manual_seed(6)
    src = source_tensor([_random_ids(n, gen) for n in (5, 9, 2)])
    tgt = torch.tensor([[2, *_random_ids(8, gen)] for _ in range(3)])  # BOS + 8 tokens each
    memory, src_mask = model.encode(src)
    full = model.decode(tgt, memory, src_mask)  # (3, 9, vocab)
    state = model.start_decoding(memory, src_mask, capacity)
    for t in range(tgt.size(1)):
        step_logits = model.decode_step(tgt[:, t : t + 1], state)
        torch.testing.assert_close(step_logits, full[:, t], atol=1e-5, rtol=0)


def test_recorded_attention_is_what_every_decoding_step_attends_with(model):
    gen = torch.Generator().manual_seed(9)
    src = source_tensor([_random_ids(n, gen) for n in (5, 3)])  # sentence 1 is padded
    tgt = torch.tensor([[2, *_random_ids(4, gen)] for _ in range(2)])
    maps = model.attention(src, tgt)
    assert maps.cross[0].shape == (2, 4, 5, 6)  # (batch, heads, tgt_len, src_len)
    for weights in (*maps.encoder, *maps.cross):  # rows are distributions over real keys
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))
        assert weights[1, ..., 4:].abs().max() == 0  # sentence 1's padding: no weight at all
    for weights in maps.decoder:
        assert torch.equal(weights.triu(1), torch.zeros_like(weights))  # nothing from later ones

    # Step by step, two beams per sentence (rows grouped by sentence), each decoder attention
    # module asked for its weights: every step's are a row of the teacher-forced maps.
    memory, src_mask = model.encode(src)
    state = model.start_decoding(memory, src_mask, tgt.size(1), beams=2)
    model.decode_step(tgt[:, :1], state)
    state.select(torch.tensor([0, 0, 1, 1]))
    modules = [
        m for layer in model.decoder_layers for m in (layer.tgt_tgt_attn, layer.src_tgt_attn)
    ]
    for module in modules:
        module.record = True
    try:
        for t in range(1, tgt.size(1)):
            model.decode_step(tgt.repeat_interleave(2, 0)[:, t : t + 1], state)
    finally:
        for module in modules:
            module.record = False
    for layer, (self_attn, cross_attn) in enumerate(zip(modules[::2], modules[1::2], strict=True)):
        steps = zip(self_attn.recorded, cross_attn.recorded, strict=True)
        assert len(self_attn.recorded) == tgt.size(1) - 1
        for position, (self_step, cross_step) in enumerate(steps, start=1):
            expected_self = maps.decoder[layer][:, :, position, : position + 1]
            expected_cross = maps.cross[layer][:, :, position]
            torch.testing.assert_close(self_step[:, :, 0], expected_self.repeat_interleave(2, 0))
            torch.testing.assert_close(cross_step[:, :, 0], expected_cross.repeat_interleave(2, 0))


def test_cached_greedy_equals_the_recompute_everything_reference(model):
    gen = torch.Generator().manual_seed(7)
    src = source_tensor([_random_ids(n, gen) for n in (3, 11, 6, 1, 8)])
    cached = greedy_decode(model, src, 1.5, 4)
    assert [h.tokens for h in cached] == greedy_decode_reference(model, src, 1.5, 4)
    lengths = {len(h.tokens) for h in cached}
    assert len(lengths) > 1  # sentences finish at different steps: rows really get dropped


def test_dropping_rows_from_the_decoder_state_keeps_the_others():
    model = make_model()
    gen = torch.Generator().manual_seed(8)
    src = source_tensor([_random_ids(n, gen) for n in (4, 7, 5)])
    memory, src_mask = model.encode(src)
    tgt = torch.tensor([[2, *_random_ids(3, gen)] for _ in range(3)])
    state = model.start_decoding(memory, src_mask, 4)
    for t in range(2):
        model.decode_step(tgt[:, t : t + 1], state)
    kept = torch.tensor([2, 0])  # row 1 finished; the order may change too
    state.select(kept, kept)
    full = model.decode(tgt[[2, 0]], memory[[2, 0]], src_mask[[2, 0]])
    torch.testing.assert_close(
        model.decode_step(tgt[[2, 0], 2:3], state), full[:, 2], atol=1e-5, rtol=0
    )


def test_beams_share_their_sentences_cross_attention_and_follow_their_parents():
    """Beam search's state: one row per sentence at BOS, then `beams` rows per sentence over one
    copy of each sentence's encoder keys and values. After rows are widened, reordered (each beam
    follows a parent) and a sentence is dropped, every row's next logits equal a full recompute
    of that row's own prefix."""
    model, beams = make_model(), 3
    gen = torch.Generator().manual_seed(9)
    src = source_tensor([_random_ids(n, gen) for n in (4, 7)])
    memory, src_mask = model.encode(src)
    tgt = torch.tensor([[2, *_random_ids(3, gen)] for _ in range(2 * beams)])  # row = s * 3 + b
    state = model.start_decoding(memory, src_mask, 4, beams)
    model.decode_step(tgt[[0, 3], :1], state)  # BOS, once per sentence
    state.select(torch.tensor([0, 0, 0, 1, 1, 1]))  # widen: every beam starts from BOS
    model.decode_step(tgt[:, 1:2], state)
    assert state.cross_attention[0].keys.size(0) == 2  # once per sentence, not per beam
    parents = torch.tensor([2, 2, 0, 4, 3, 3])  # beams of sentence 0, then of sentence 1
    state.select(parents)
    prefixes = torch.cat([tgt[parents, :2], tgt[:, 2:3]], dim=1)  # each parent's prefix + a token
    sentence_of_row = torch.arange(2).repeat_interleave(beams)
    full = model.decode(prefixes, memory[sentence_of_row], src_mask[sentence_of_row])
    torch.testing.assert_close(model.decode_step(tgt[:, 2:3], state), full[:, 2], atol=1e-5, rtol=0)

    state.select(torch.tensor([3, 4, 5]), torch.tensor([1]))  # sentence 0 finished
    assert state.cross_attention[0].keys.size(0) == 1
    prefixes = torch.cat([prefixes[3:], tgt[3:, 3:4]], dim=1)
    full = model.decode(prefixes, memory[[1, 1, 1]], src_mask[[1, 1, 1]])
    torch.testing.assert_close(
        model.decode_step(tgt[3:, 3:4], state), full[:, 3], atol=1e-5, rtol=0
    )


def test_tied_embeddings_share_one_matrix():
    decoder, everything, untied = (make_model(tie_embeddings=t) for t in ("decoder", "all", "none"))
    assert decoder.output_proj.weight is decoder.tgt_embed.weight
    assert decoder.src_embed.weight is not decoder.tgt_embed.weight
    assert (
        everything.output_proj.weight is everything.src_embed.weight is everything.tgt_embed.weight
    )
    embedding = VOCAB * 32
    assert untied.num_parameters() - decoder.num_parameters() == embedding
    assert untied.num_parameters() - everything.num_parameters() == 2 * embedding


def test_tying_everything_needs_one_vocabulary():
    config = ModelConfig.base(tie_embeddings="all")
    with pytest.raises(ValueError, match="joint"):
        Transformer(config, 10, 12)


def test_pre_norm_ends_each_stack_with_a_layer_norm():
    pre, post = make_model(norm="pre"), make_model(norm="post")
    assert isinstance(pre.encoder_norm, torch.nn.LayerNorm) and isinstance(
        pre.decoder_norm, torch.nn.LayerNorm
    )
    assert isinstance(post.encoder_norm, torch.nn.Identity)
    # the same weights give different functions: the norm really moved
    post.load_state_dict(
        {k: v for k, v in pre.state_dict().items() if "_norm." not in k}, strict=True
    )
    src, tgt = source_tensor([[5, 6, 7]]), torch.tensor([[2, 8]])
    assert not torch.allclose(pre(src, tgt), post(src, tgt))


def test_learned_positions_refuse_sequences_past_their_table():
    model = make_model(positional="learned", max_positions=4)
    with pytest.raises(ValueError, match="max_positions=4"):
        model(source_tensor([[5] * 6]), torch.tensor([[2, 5]]))


def test_decoding_with_learned_positions_stops_at_the_end_of_the_table():
    model = make_model(positional="learned", max_positions=8)
    src = source_tensor([[5] * 6, [6] * 3])  # 6 + EOS fills 7 of the 8 positions
    for output in greedy_decode(model, src, max_len_a=2.0, max_len_b=5):  # asks for 17 and 11
        assert len(output.tokens) <= 8
    for output in beam_search(model, src, 3, 2.0, 5):
        assert len(output[0].tokens) <= 8


def test_dropout_drops_a_share_p_and_rescales_the_rest():
    from transformer_cli.model.layers import Dropout

    torch.manual_seed(0)
    x = torch.rand(400, 1000) + 1.0  # no zeros of its own
    dropout = Dropout(0.3)
    torch.manual_seed(1)
    y = dropout(x)
    dropped = y == 0
    assert dropped.float().mean().item() == pytest.approx(0.3, abs=0.003)  # 400k draws
    torch.testing.assert_close(y[~dropped], x[~dropped] / 0.7)
    torch.manual_seed(1)
    torch.testing.assert_close(dropout(x), y)  # the seed decides the mask
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(dropout(x).sum(), x)
    assert torch.unique(grad).tolist() == pytest.approx([0.0, 1 / 0.7])
    assert torch.equal(Dropout(0.3).eval()(x), x)
