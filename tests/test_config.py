"""Config loading: the shipped configs validate; every mistake is one line naming the key."""

import itertools
import re
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from transformer_cli.config import config_reference, load_config, validate_config
from transformer_cli.errors import ConfigError

CONFIGS = Path(__file__).parent.parent / "configs"


@pytest.fixture
def toy_dict() -> dict:
    return yaml.safe_load((CONFIGS / "toy.yaml").read_text())


def _write(tmp_path: Path, raw: dict) -> Path:
    return _write_text(tmp_path, yaml.safe_dump(raw))


def _write_text(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", sorted(path.name for path in CONFIGS.glob("*.yaml")))
def test_shipped_configs_are_valid(name):
    config = load_config(CONFIGS / name)
    assert config.model.d_model % config.model.n_heads == 0


def test_base_config_is_the_paper_base_model():
    model = load_config(CONFIGS / "base.yaml").model
    assert (model.d_model, model.n_heads, model.d_ff, model.dropout) == (512, 8, 2048, 0.1)
    assert (model.n_encoder_layers, model.n_decoder_layers) == (6, 6)


def test_unknown_key_is_named_with_a_suggestion(tmp_path, toy_dict):
    toy_dict["model"]["n_layers"] = 3
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, toy_dict))
    message = str(err.value)
    assert "model.n_layers: unknown key" in message
    assert "did you mean model.n_encoder_layers" in message or "n_decoder_layers" in message
    assert "\n" not in message


def test_a_long_key_or_value_is_quoted_clipped(tmp_path, toy_dict):
    toy_dict["train"]["lr"] = "x" * 1000
    toy_dict["train"]["y" * 1000] = 1
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, toy_dict))
    message = str(err.value)
    assert f"train.{'y' * 70}" in message and "unknown key" in message
    assert "train.lr: Input should be a valid number" in message and f"'{'x' * 70}" in message
    assert len(message) < 800


def test_wrong_type_names_key_and_value(tmp_path, toy_dict):
    toy_dict["train"]["batch_tokens"] = "lots"
    with pytest.raises(ConfigError, match=r"train\.batch_tokens: .*'lots'"):
        load_config(_write(tmp_path, toy_dict))


def test_d_model_not_divisible_by_heads_is_rejected(tmp_path, toy_dict):
    toy_dict["model"]["n_heads"] = 5
    with pytest.raises(
        ConfigError, match=r"model\.d_model: 128 is not divisible by model\.n_heads \(5\)"
    ):
        load_config(_write(tmp_path, toy_dict))


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("model", "dropout", 1.5),
        ("train", "lr", 0),
        ("train", "warmup_steps", -1),
        ("tokenizer", "vocab_size", 2),
        ("train", "label_smoothing", 1.0),
        ("train", "seed", -1),  # numpy takes seeds in [0, 2**32)
        ("train", "adam_betas", [0.9, 1.5]),
        ("train", "lr", float("inf")),
        ("train", "max_steps", True),  # YAML `true`, which would otherwise read as 1
    ],
)
def test_impossible_values_name_the_key(tmp_path, toy_dict, section, key, value):
    toy_dict[section][key] = value
    with pytest.raises(ConfigError, match=rf"{section}\.{key}(\.\d)?: "):
        load_config(_write(tmp_path, toy_dict))


def test_missing_required_key_is_named(tmp_path, toy_dict):
    del toy_dict["model"]["d_model"]
    with pytest.raises(ConfigError, match=r"model\.d_model: missing required key"):
        load_config(_write(tmp_path, toy_dict))


@pytest.mark.parametrize(
    ("files", "pattern"),
    [
        ({"src": "a.en"}, r"data\.test\.tgt: missing \(give src and tgt, or tsv\)"),
        ({"src": "a.en", "tgt": "a.de", "tsv": "a.tsv"}, r"data\.test\.tsv: give either"),
    ],
)
def test_a_corpus_is_two_files_or_one_tsv(toy_dict, files, pattern):
    toy_dict["data"]["test"] = files
    with pytest.raises(ConfigError, match=pattern):
        validate_config(toy_dict)
    toy_dict["data"]["test"] = {"tsv": "test.tsv.gz"}
    assert validate_config(toy_dict).data.test.tsv == "test.tsv.gz"


def test_the_test_set_is_optional(tmp_path, toy_dict):
    del toy_dict["data"]["test"]
    assert load_config(_write(tmp_path, toy_dict)).data.test is None


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        (["tokenizer.joint=false", "model.tie_embeddings=all"], r"model\.tie_embeddings: 'all'"),
        (["tokenizer.joint=false", "tokenizer.model=sp.model"], r"tokenizer\.model: one model"),
        (["tokenizer.src_model=a.model"], r"tokenizer\.src_model: separate models need"),
        (["tokenizer.joint=false", "tokenizer.src_model=a"], r"tokenizer\.tgt_model: give both"),
        (["model.positional=learned", "model.max_positions=64"], r"data\.max_len: 64 must be"),
    ],
)
def test_sections_that_disagree_are_rejected(overrides, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_config(CONFIGS / "toy.yaml", overrides)


def test_both_stopping_limits_null_is_an_error(toy_dict):
    toy_dict["train"]["max_steps"] = None
    toy_dict["train"]["max_minutes"] = None
    with pytest.raises(ConfigError, match=r"train\.max_steps: .*set at least one"):
        validate_config(toy_dict)


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("data:\n  src_lang: en\n  tgt_lang: [de\nmodel: {}\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml:\d+: invalid YAML"):
        load_config(path)


def test_a_section_given_twice_is_named_with_its_line(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text((CONFIGS / "toy.yaml").read_text() + "train:\n  max_steps: 5\n")
    lines = len(path.read_text().splitlines())
    with pytest.raises(
        ConfigError, match=rf"twice\.yaml:{lines - 1}: invalid YAML: 'train' appears"
    ):
        load_config(path)


def test_yaml_merge_keys_work_but_a_key_given_twice_does_not(tmp_path):
    # Refusing duplicate keys must not refuse `<<: *anchor`, whose keys a mapping may override.
    toy = (CONFIGS / "toy.yaml").read_text().replace("  valid: {", "  valid: &valid {")
    merged = toy.replace("tgt: data/toy-en-de/test.de}", "<<: *valid}")
    test = load_config(_write_text(tmp_path, merged)).data.test
    assert (test.src, test.tgt) == ("data/toy-en-de/test.en", "data/toy-en-de/valid.de")
    twice = merged.replace("<<: *valid}", "<<: *valid, src: again}")
    with pytest.raises(ConfigError, match=r"config\.yaml:\d+: invalid YAML: 'src' appears twice"):
        load_config(_write_text(tmp_path, twice))


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_set_overrides_parse_yaml_scalars():
    config = load_config(
        CONFIGS / "toy.yaml",
        ["train.max_steps=null", "model.dropout=0.25", "train.max_minutes=2", "data.src_lang=fr"],
    )
    assert config.train.max_steps is None
    assert config.model.dropout == 0.25
    assert config.train.max_minutes == 2
    assert config.data.src_lang == "fr"


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ("model.dmodel=64", r"--set model\.dmodel: unknown key; did you mean model\.d_model"),
        ("train.lr=fast", r"--set train\.lr: "),
        ("model.d_model.x=1", r"--set model\.d_model\.x: model\.d_model is not a section"),
        ("train.lr", r"expected KEY=VALUE"),
        ("unknown.key=1", r"--set unknown: unknown key"),
    ],
)
def test_bad_overrides_are_reported_as_overrides(override, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_config(CONFIGS / "toy.yaml", [override])


def test_resolved_config_round_trips_through_yaml():
    config = load_config(CONFIGS / "toy.yaml", ["train.seed=7"])
    assert validate_config(yaml.safe_load(config.to_yaml())) == config


def test_readme_config_reference_matches_the_schema():
    readme = (CONFIGS.parent / "README.md").read_text(encoding="utf-8")
    assert config_reference() in readme, "run: python scripts/sync_readme_config.py"


def test_a_misspelt_required_key_names_both_problems_and_the_close_match(tmp_path):
    raw = yaml.safe_load((REPO / "configs" / "toy.yaml").read_text())
    raw["model"]["d_modle"] = raw["model"].pop("d_model")
    with pytest.raises(ConfigError) as caught:
        validate_config(raw, source="typo.yaml")
    assert str(caught.value).startswith(
        "typo.yaml: model.d_modle: unknown key; did you mean model.d_model?"
    )
    assert str(caught.value).endswith("; model.d_model: missing required key")


def test_a_sentencepiece_sample_of_100_or_fewer_is_refused_by_name(tmp_path, toy_dict):
    toy_dict["tokenizer"]["input_sentence_size"] = 100
    with pytest.raises(ConfigError, match=r"tokenizer\.input_sentence_size: 100 is too small"):
        load_config(_write(tmp_path, toy_dict))


def test_the_readme_states_the_torch_floor_that_pyproject_requires():
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    floor = re.search(r'"torch>=([\d.]+),<3"', pyproject).group(1)
    assert f"tcli needs torch {floor} or newer" in (REPO / "README.md").read_text(encoding="utf-8")


def test_the_readmes_config_error_examples_are_what_tcli_prints():
    readme = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    examples = [
        (command, printed)
        for command, printed in itertools.pairwise(readme)
        if command.startswith("$ tcli train configs/toy.yaml --set ")
    ]
    assert len(examples) >= 2
    for command, printed in examples:
        overrides = command.split("--set ")[1:]
        with pytest.raises(ConfigError) as caught:
            load_config(REPO / "configs" / "toy.yaml", [o.strip() for o in overrides])
        assert printed == f"tcli: error: {caught.value}".replace(str(REPO) + "/", "")
