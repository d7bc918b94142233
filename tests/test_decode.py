"""Greedy search: per-sentence stopping, length limits, batching, and BLEU scoring."""

import pytest
import sacrebleu
import torch

from transformer_cli.data.batching import source_tensor
from transformer_cli.data.tokenizer import EOS_ID, PAD_ID
from transformer_cli.decode import greedy_decode, max_output_lengths
from transformer_cli.errors import ConfigError, DataError
from transformer_cli.evaluate import bleu_tokenizer, score
from transformer_cli.model import DecoderState

VOCAB = 12


class ScriptedModel:
    """Stands in for the Transformer: sentence i says scripts[i], one token per step."""

    def __init__(self, scripts: list[list[int]]) -> None:
        self.scripts = scripts
        self.pad_id = PAD_ID
        self.max_length = None  # no table of positions to run out of
        self.calls = 0

    def encode(self, src):
        # The "memory" of row i carries i, so that a row can be recognised after others are dropped.
        memory = torch.arange(src.size(0), dtype=torch.float)[:, None, None].expand(-1, 1, 4)
        return memory, torch.ones(src.size(0), 1, 1, 1, dtype=torch.bool)

    def start_decoding(self, memory, src_mask, capacity, beams=1):
        return _ScriptedState(src_mask, memory[:, 0, 0].long().repeat_interleave(beams))

    def decode_step(self, tokens, state):
        self.calls += 1
        logits = torch.zeros(tokens.size(0), VOCAB)
        for row, sentence in enumerate(state.sentence.tolist()):
            script = self.scripts[sentence]
            logits[row, script[min(state.length, len(script) - 1)]] = 10.0
        state.length += 1
        return logits


class _ScriptedState(DecoderState):
    """A decoder state that knows which sentence each row decodes."""

    def __init__(self, src_mask, sentence):
        super().__init__(src_mask, [], [])
        self.sentence = sentence

    def select(self, rows, sentences=None):
        super().select(rows, sentences)
        self.sentence = self.sentence[rows]


def test_each_sentence_stops_at_its_own_eos():
    model = ScriptedModel([[5, EOS_ID], [6, 7, 8, EOS_ID], [EOS_ID]])
    src = source_tensor([[4] * 10] * 3)
    outputs = greedy_decode(model, src, max_len_a=1.0, max_len_b=5)
    assert [h.tokens for h in outputs] == [[5], [6, 7, 8], []]
    assert model.calls == 4  # stops once the slowest sentence has emitted EOS


def test_output_length_is_capped_at_a_times_source_length_plus_b():
    model = ScriptedModel([[5], [6]])  # never says EOS
    src = source_tensor([[4] * 4, [4] * 10])
    assert max_output_lengths(src, 0, 0.5, 3).tolist() == [5, 8]
    outputs = greedy_decode(model, src, max_len_a=0.5, max_len_b=3)
    assert [len(out.tokens) for out in outputs] == [5, 8]


def test_our_scores_equal_sacrebleu():
    hyps = ["Der Hund sieht die Katze.", "Ich weiß, dass er schläft.", "Das Haus ist alt."]
    refs = ["Der Hund sieht die Katze.", "Ich weiß, dass sie schläft.", "Das alte Haus."]
    scores = score(hyps, refs)
    assert scores.bleu == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score, abs=1e-4)
    assert scores.chrf == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score, abs=1e-4)
    assert scores.bleu_signature.startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp")
    assert scores.bleu_details.startswith("BLEU = ")
    assert scores.n_sentences == 3


def test_bleu_tokenizes_as_sacrebleu_recommends_for_the_target_language():
    assert [bleu_tokenizer(lang) for lang in ("de", "zh", "ja", "ko", "zh-CN", None)] == [
        "13a", "zh", "ja-mecab", "ko-mecab", "zh", "13a",
    ]  # fmt: skip
    assert bleu_tokenizer("zh", "char") == "char"  # eval.bleu_tokenize wins
    hyps, refs = ["猫坐在垫子上。", "我喜欢读书。"], ["猫坐在垫子上了。", "我很喜欢读书。"]
    chinese = score(hyps, refs, "zh")
    assert chinese.bleu == pytest.approx(
        sacrebleu.corpus_bleu(hyps, [refs], tokenize="zh").score, abs=1e-4
    )
    assert "|tok:zh|" in chinese.bleu_signature
    assert chinese.bleu != score(hyps, refs).bleu  # 13a sees each sentence as one word


def test_a_bleu_tokenizer_that_cannot_run_is_a_one_line_config_error():
    with pytest.raises(ConfigError, match=r"eval\.bleu_tokenize: sacreBLEU has no tokenizer 'x'"):
        score(["a"], ["a"], "x")
    try:
        import MeCab  # noqa: F401
    except ImportError:  # sacreBLEU's Japanese tokenizer needs it
        with pytest.raises(
            ConfigError, match=r"ja-mecab tokenizer needs more packages.*sacrebleu\[ja\]"
        ):
            score(["a"], ["a"], "ja-mecab")


def test_scoring_unaligned_files_is_an_error():
    with pytest.raises(DataError, match="2 hypotheses but 3 references"):
        score(["a", "b"], ["a", "b", "c"])
