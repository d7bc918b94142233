"""Export to CTranslate2: the exported model, run by CTranslate2's C++ engine, decodes and scores
as tcli does."""

import pytest
import torch
from conftest import tcli
from test_model import make_model
from test_search import _sentences

from transformer_cli import load_run
from transformer_cli.data.batching import source_tensor
from transformer_cli.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from transformer_cli.decode import greedy_decode, max_output_lengths
from transformer_cli.export import export_ctranslate2

ctranslate2 = pytest.importorskip(
    "ctranslate2", reason="pip install 'transformer-cli[ctranslate2]'"
)


def test_ctranslate2_greedy_output_equals_tcli_greedy(run_dir, tmp_path):
    """The toy (demo) architecture, trained: every test and validation sentence."""
    out = tmp_path / "ct2"
    result = tcli("export", run_dir, out, "--to", "ctranslate2")
    assert f"wrote {out}" in result.stdout
    run = load_run(run_dir, device="cpu")
    ids = [s for s in run.tokenizers.source.encode(_sentences(run_dir)) if s]
    src = source_tensor(ids)
    ours = [h.tokens for h in greedy_decode(run.model, src, 1.5, 5)]
    limits = max_output_lengths(src, PAD_ID, 1.5, 5).tolist()  # the same, sentence by sentence
    translator = ctranslate2.Translator(str(out), device="cpu")
    source = run.tokenizers.source.pieces
    target = {piece: i for i, piece in enumerate(run.tokenizers.target.pieces)}
    theirs = []
    for sentence, limit in zip(ids, limits, strict=True):
        result = translator.translate_batch(
            [[source[i] for i in sentence]], beam_size=1, max_decoding_length=limit
        )
        theirs.append([target[piece] for piece in result[0].hypotheses[0]])
    assert theirs == ours
    assert len({len(tokens) for tokens in ours}) > 3  # outputs of many lengths, not one degenerate


@pytest.mark.parametrize(
    "architecture",
    [
        dict(norm="post", tie_embeddings="none", positional="sinusoidal"),
        dict(norm="pre", tie_embeddings="all", positional="sinusoidal"),
        dict(norm="pre", tie_embeddings="decoder", positional="learned", max_positions=64),
    ],
)
def test_ctranslate2_scores_equal_tcli_for_each_architecture(run_dir, tmp_path, architecture):
    """Every token's log-probability through CTranslate2's engine equals tcli's (with PAD and BOS,
    which the export rules out as outputs, left out of the softmax)."""
    run = load_run(run_dir, device="cpu")
    model = make_model(run.tokenizers.target.vocab_size, **architecture)
    with torch.no_grad():  # untrained biases are zero: give every one a value to carry over
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.add_(0.1 * torch.randn_like(parameter))
    out = export_ctranslate2(model, run.tokenizers, tmp_path / "ct2")
    sentences = _sentences(run_dir)[:8]
    src_ids, tgt_ids = (run.tokenizers.source.encode(sentences),) * 2
    src = source_tensor(src_ids)
    tgt_in = source_tensor([[BOS_ID, *t] for t in tgt_ids])[:, :-1]  # BOS + target, padded
    tgt_out = source_tensor([[*t, EOS_ID] for t in tgt_ids])[:, :-1]
    with torch.no_grad():
        logits = model(src, tgt_in)
        logits[..., [PAD_ID, BOS_ID]] = float("-inf")
        ours = logits.log_softmax(-1).gather(-1, tgt_out[..., None]).squeeze(-1)
    source, target = run.tokenizers.source.pieces, run.tokenizers.target.pieces
    scored = ctranslate2.Translator(str(out), device="cpu").score_batch(
        [[source[i] for i in s] for s in src_ids], [[target[i] for i in t] for t in tgt_ids]
    )
    for row, result in enumerate(scored):
        expected = ours[row, : len(tgt_ids[row]) + 1]  # the target's tokens and EOS
        torch.testing.assert_close(torch.tensor(result.log_probs), expected, atol=2e-4, rtol=1e-4)


def test_export_refuses_to_overwrite_and_names_bad_options(run_dir, tmp_path):
    out = tmp_path / "ct2"
    out.mkdir()
    result = tcli("export", run_dir, out, check=False)
    assert result.returncode == 2 and "already exists; pass --overwrite" in result.stderr
    result = tcli("export", run_dir, tmp_path / "x", "--quantization", "int3", check=False)
    assert result.returncode == 2 and "--quantization int3" in result.stderr
    result = tcli("export", run_dir, tmp_path / "x", "--to", "onnx", check=False)
    assert result.returncode == 2 and "--to onnx" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct2"]  # nothing half-written
    result = tcli("export", run_dir, out, "--overwrite", "--quantization", "int8")
    assert (out / "model.bin").is_file()
