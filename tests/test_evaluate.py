"""Evaluation (evaluate.py): sacreBLEU scores and tokenizers, and the Validator training runs."""

import pytest
import sacrebleu
from conftest import tiny_config

from transformer_cli.config import ParallelFiles
from transformer_cli.errors import ConfigError, DataError
from transformer_cli.evaluate import bleu_tokenizer, score
from transformer_cli.train import train


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


def test_validation_lines_past_learned_positions_are_left_out_and_counted(corpus, tmp_path, caplog):
    valid = tmp_path / "valid"
    valid.mkdir()
    for lang in ("en", "de"):
        lines = (corpus / f"valid.{lang}").read_text(encoding="utf-8").splitlines()
        long_line = " ".join(["the dog sees the cat"] * 20)  # far past 96 positions
        (valid / f"valid.{lang}").write_text("\n".join([*lines, long_line]) + "\n", "utf-8")
    config = tiny_config(corpus, max_steps=4, eval_every=4).model_copy(deep=True)
    config.data.valid = ParallelFiles(src=str(valid / "valid.en"), tgt=str(valid / "valid.de"))
    config.model.positional, config.model.max_positions, config.data.max_len = "learned", 96, 80
    caplog.set_level("WARNING", logger="transformer_cli")
    result = train(config, tmp_path / "run", device="cpu")
    assert result.steps == 4
    assert "data.valid: 1 of 21 pairs have a side longer than 95 tokens" in caplog.text
    assert "validating on the other 20" in caplog.text
