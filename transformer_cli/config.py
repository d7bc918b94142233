"""The run configuration: one typed schema, loaded from YAML, with dotted `--set` overrides.

Unknown keys, wrong types and impossible values are rejected with a one-line `ConfigError` that
names the key. The resolved config is saved as `config.yaml` in every run directory, and that
saved file is what `tcli translate` and `tcli eval` read back. The `model` section is the
model's own config, `ModelConfig` (model/transformer.py), which `Transformer` takes directly.

Data paths are used as written: relative paths are relative to the directory you run `tcli` from.
"""

import difflib
from collections.abc import Hashable
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from transformer_cli.errors import ConfigError
from transformer_cli.model.transformer import ModelConfig
from transformer_cli.schema import Section, member_types


class ParallelFiles(Section):
    """A corpus: `src` and `tgt` files, or one `tsv` file with both columns."""

    src: str | None = Field(
        None, description="source-language file, one sentence a line (.gz read transparently)"
    )
    tgt: str | None = Field(None, description="target-language file, line-aligned with `src`")
    tsv: str | None = Field(
        None, description="instead of src and tgt: one file of source<TAB>target lines"
    )

    @model_validator(mode="after")
    def _one_form(self) -> "ParallelFiles":
        if self.tsv is not None and (self.src is not None or self.tgt is not None):
            raise ValueError("tsv: give either src and tgt, or tsv, not both")
        if self.tsv is None and (self.src is None or self.tgt is None):
            missing = "src" if self.src is None else "tgt"
            raise ValueError(f"{missing}: missing (give src and tgt, or tsv)")
        return self


class DataConfig(Section):
    src_lang: str = Field(description="source language code, e.g. en")
    tgt_lang: str = Field(description="target language code, e.g. de")
    train: ParallelFiles
    valid: ParallelFiles
    test: ParallelFiles | None = Field(
        None,
        description="the test set `tcli eval RUN_DIR` scores when given no --src and --ref "
        "(null: none)",
    )
    max_len: int = Field(
        128,
        gt=0,
        description="drop (and count) training pairs with a side longer than this many tokens",
    )
    max_ratio: float | None = Field(
        9.0,
        ge=1,
        description="drop (and count) training pairs whose longer side has more than this many "
        "times the tokens of the shorter (null: no limit)",
    )
    download: str | None = Field(
        None, description="the command that fetches the data, suggested when its files are missing"
    )


class TokenizerConfig(Section):
    vocab_size: int = Field(
        8000, gt=4, description="SentencePiece vocabulary size (each, when not joint)"
    )
    joint: bool = Field(True, description="one vocabulary for both languages, or one per language")
    model_type: Literal["unigram", "bpe"] = Field("unigram", description="SentencePiece algorithm")
    character_coverage: float = Field(
        1.0, gt=0, le=1, description="share of characters the vocabulary must cover"
    )
    input_sentence_size: int = Field(
        500_000,
        ge=0,
        description="sentences sampled from the training data to train SentencePiece (0: all); "
        "its memory grows with the sample",
    )
    model: str | None = Field(
        None, description="use this SentencePiece model (joint) instead of training one"
    )
    src_model: str | None = Field(
        None, description="use these SentencePiece models (joint: false) instead of training"
    )
    tgt_model: str | None = Field(None, description="see src_model")

    @model_validator(mode="after")
    def _samples_over_100(self) -> "TokenizerConfig":
        if 0 < self.input_sentence_size <= 100:  # SentencePiece fails on smaller samples
            raise ValueError(
                f"input_sentence_size: {self.input_sentence_size} is too small a sample for "
                "SentencePiece; give 0 (all sentences) or more than 100"
            )
        return self

    @model_validator(mode="after")
    def _models_match_joint(self) -> "TokenizerConfig":
        if self.joint and (self.src_model or self.tgt_model):
            raise ValueError("src_model: separate models need tokenizer.joint: false")
        if not self.joint and self.model:
            raise ValueError("model: one model is a joint vocabulary; with joint: false "
                             "give src_model and tgt_model")  # fmt: skip
        if (self.src_model is None) != (self.tgt_model is None):
            missing = "src_model" if self.src_model is None else "tgt_model"
            raise ValueError(f"{missing}: give both src_model and tgt_model, or neither")
        return self


_Beta = Annotated[float, Field(ge=0, lt=1)]  # an Adam decay rate


class TrainConfig(Section):
    max_steps: int | None = Field(
        gt=0, description="stop after this many optimizer steps (null: no limit)"
    )
    max_minutes: float | None = Field(
        gt=0, description="stop after this many minutes of training (null: no limit)"
    )
    batch_tokens: int = Field(
        gt=0, description="tokens per batch (the longer side, padding included)"
    )
    accum_steps: int = Field(
        1, gt=0, description="batches whose gradients are summed into one optimizer step"
    )
    lr: float = Field(
        gt=0, description="peak learning rate (for noam: the factor in front of the formula)"
    )
    lr_schedule: Literal["inverse_sqrt", "noam", "cosine", "budget", "constant"] = Field(
        "inverse_sqrt", description="learning-rate curve after warmup (see README)"
    )
    warmup_steps: int = Field(ge=0, description="steps of linear learning-rate warmup")
    label_smoothing: float = Field(
        ge=0,
        lt=1,
        description="label smoothing of the loss, spread over all outputs but PAD and BOS",
    )
    seed: int = Field(
        ge=0, lt=2**32, description="seed for parameter initialisation, dropout and batch order"
    )
    eval_every: int = Field(
        gt=0, description="validate (loss, perplexity, greedy BLEU) every this many steps"
    )
    log_every: int = Field(50, gt=0, description="write a metrics.jsonl line every this many steps")
    clip_grad_norm: float | None = Field(
        1.0, gt=0, description="clip the gradient norm to this (null: no clipping)"
    )
    adam_betas: tuple[_Beta, _Beta] = Field((0.9, 0.98), description="Adam's beta1, beta2")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "fp32",
        description="autocast precision of forward passes (fp16: CUDA only; auto: bf16 where "
        "the device computes it natively, else fp32)",
    )
    best_metric: Literal["bleu", "loss"] = Field(
        "bleu", description="validation score that picks the best checkpoint"
    )
    early_stopping_patience: int | None = Field(
        None, gt=0, description="stop after this many validations without a better best_metric"
    )
    keep_last: int = Field(
        5, gt=0, description="step checkpoints kept on disk (best is always kept as well)"
    )
    max_bad_steps: int = Field(
        5,
        gt=0,
        description="stop after this many steps in a row with a non-finite loss or gradient "
        "(each such step is skipped: no update)",
    )
    tensorboard: bool = Field(
        False, description="also log to RUN_DIR/tensorboard (needs the tensorboard package)"
    )
    dist_backend: Literal["auto", "gloo", "nccl"] = Field(
        "auto",
        description="torch.distributed backend when several processes train (auto: nccl on "
        "CUDA, else gloo)",
    )

    @model_validator(mode="after")
    def _has_a_limit(self) -> "TrainConfig":
        if self.max_steps is None and self.max_minutes is None:
            raise ValueError("max_steps: max_steps and max_minutes are both null; set at least one")
        if self.lr_schedule == "cosine" and self.max_steps is None:
            raise ValueError("lr_schedule: cosine decays over train.max_steps, which is null")
        return self


class DecodeConfig(Section):
    max_len_a: float = Field(
        ge=0, description="output length limit: max_len_a * source_tokens + max_len_b"
    )
    max_len_b: int = Field(ge=1, description="see max_len_a")
    batch_size: int = Field(64, gt=0, description="sentences decoded together, at most")
    batch_tokens: int = Field(
        8000,
        gt=0,
        description="a batch's size, at most: its sentences x its longest source (tokens, EOS "
        "included) x the beam width (1 for greedy search); a longer sentence is a batch alone",
    )
    max_input_tokens: int = Field(
        1024,
        gt=0,
        description="a longer input line is translated in part, its first max_input_tokens "
        "tokens, with a warning (as is one longer than learned positions allow); --score does "
        "not cut",
    )
    strategy: Literal["greedy", "beam"] = Field(
        "greedy", description="search algorithm (beam with beam_size 1 is greedy)"
    )
    beam_size: int = Field(5, gt=0, description="hypotheses kept per sentence by beam search")
    length_penalty: float = Field(
        0.6,
        ge=0,
        description="GNMT length penalty alpha: beam scores are log P / ((5 + length) / 6)^alpha",
    )


class EvalConfig(Section):
    bleu_tokenize: (
        Literal[
            "13a", "intl", "zh", "ja-mecab", "ko-mecab", "char", "none", "flores101", "flores200"
        ]
        | None
    ) = Field(
        None,
        description="sacreBLEU's BLEU tokenizer; null: its choice for data.tgt_lang (zh, "
        "ja-mecab, ko-mecab, else 13a)",
    )


class Config(Section):
    data: DataConfig
    tokenizer: TokenizerConfig
    model: ModelConfig
    train: TrainConfig
    decode: DecodeConfig
    eval: EvalConfig = EvalConfig()

    @model_validator(mode="after")
    def _sections_agree(self) -> "Config":
        # one vocabulary is one tokenizer (the Transformer sees only sizes, and checks those)
        if self.model.tie_embeddings == "all" and not self.tokenizer.joint:
            raise ValueError("model.tie_embeddings: 'all' shares one embedding between the "
                             "languages, so it needs tokenizer.joint: true")  # fmt: skip
        if self.model.positional == "learned" and self.data.max_len >= self.model.max_positions:
            raise ValueError(f"data.max_len: {self.data.max_len} must be below "
                             f"model.max_positions ({self.model.max_positions}) with learned "
                             "positions")  # fmt: skip
        return self

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def config_reference() -> str:
    """The config reference as a markdown table, generated from the schema (shown in the README)."""
    rows = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]

    def walk(section: type[BaseModel], prefix: str) -> None:
        for name, field in section.model_fields.items():
            key, annotation = f"{prefix}{name}", field.annotation
            if nested := _section_type(annotation):
                if type(None) in member_types(annotation):  # optional: say what null means
                    default = f"`{_yaml_scalar(field.default)}`"
                    rows.append(f"| `{key}` | mapping or null | {default} | {field.description} |")
                walk(nested, f"{key}.")
                continue
            default = "required" if field.is_required() else f"`{_yaml_scalar(field.default)}`"
            rows.append(f"| `{key}` | {_type_name(annotation)} | {default} | {field.description} |")

    walk(Config, "")
    return "\n".join(rows) + "\n"


def _section_type(annotation: Any) -> type[BaseModel] | None:
    """The section an annotation holds: ParallelFiles for `ParallelFiles | None`; else None."""
    for member in member_types(annotation):
        if isinstance(member, type) and issubclass(member, BaseModel):
            return member
    return None


def _type_name(annotation: Any) -> str:
    """int, float or null, unigram or bpe, [float, float]: types as a YAML writer sees them."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return " or ".join(map(str, args))
    if origin is Annotated:  # a type with its bounds
        return _type_name(args[0])
    if origin is tuple:
        return "[" + ", ".join(_type_name(arg) for arg in args) + "]"
    if args:  # a union such as int | None
        return " or ".join(_type_name(arg) for arg in args)
    return "null" if annotation is type(None) else annotation.__name__


def _yaml_scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).removesuffix("\n...\n").strip()


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe YAML that refuses a key given twice (PyYAML would silently keep the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor`: the keys it merges in may be overridden here
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                continue  # PyYAML's own check below refuses it, naming the line
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    problem=f"{key!r} appears twice", problem_mark=key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_config(path: str | Path, overrides: list[str] = ()) -> Config:
    """Read a YAML config, apply `KEY=VALUE` overrides (values parsed as YAML), validate it."""
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read config: {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    except RecursionError:  # PyYAML builds nested collections recursively
        raise ConfigError(f"{path}: YAML nested too deeply to read") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a YAML mapping of sections (data, model, ...)")
    overridden = [apply_override(raw, item) for item in overrides]
    return validate_config(raw, source=str(path), overridden=overridden)


def apply_override(raw: dict[str, Any], item: str) -> str:
    """Set `a.b.c=value` in the nested dict `raw`; returns the dotted key."""
    key, sep, text = item.partition("=")
    if not sep or "" in key.split("."):
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set train.max_steps=100")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    except RecursionError:
        raise ConfigError(f"--set {_printable(key)}: value nested too deeply to read") from None
    *parents, leaf = key.split(".")
    node = raw
    for depth, part in enumerate(parents):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            section = ".".join(parents[: depth + 1])
            raise ConfigError(_printable(f"--set {key}: {section} is not a section"))
        node = child
    node[leaf] = value
    return key


def validate_config(
    raw: dict[str, Any], source: str = "config", overridden: list[str] = ()
) -> Config:
    """Validate a nested dict against the schema, raising a one-line ConfigError that names every
    problem (unknown keys first: a typo also makes the key it misspells missing)."""
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        errors = sorted(err.errors(), key=lambda error: error["type"] != "extra_forbidden")
        problems, in_file = [], False
        for error in errors:
            key, message = _describe(error)
            by_set = any(
                o == key or o.startswith(key + ".") or key.startswith(o + ".") for o in overridden
            )
            in_file |= not by_set
            problems.append(_printable(f"{'--set ' if by_set else ''}{_clipped(key)}: {message}"))
        raise ConfigError(f"{source}: " * in_file + "; ".join(problems)) from None


def _describe(error: dict[str, Any]) -> tuple[str, str]:
    loc = [str(part) for part in error["loc"]]
    kind, message = error["type"], error["msg"]
    if kind == "extra_forbidden":
        section = _section_at(loc[:-1])
        allowed = list(section.model_fields) if section else []
        close = difflib.get_close_matches(loc[-1], allowed, n=1)
        hint = f"; did you mean {'.'.join([*loc[:-1], close[0]])}?" if close else ""
        return ".".join(loc), f"unknown key{hint} (allowed: {', '.join(allowed)})"
    if kind == "missing":
        return ".".join(loc), "missing required key"
    if kind == "value_error":
        # Our cross-field checks start their message with the offending key, "d_model: ...".
        field, _, text = message.removeprefix("Value error, ").partition(": ")
        return ".".join([*loc, field]), text
    return ".".join(loc), f"{message} (got {_clipped(repr(error['input']))})"


def _clipped(text: str, limit: int = 80) -> str:
    """A key or value the user wrote, as a message quotes it: its first `limit` characters."""
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _printable(text: str) -> str:
    """Text for a one-line message: line breaks and control characters (in a key) escaped."""
    return text if text.isprintable() else repr(text)[1:-1]


def _section_at(loc: list[str]) -> type[BaseModel] | None:
    section: type[BaseModel] = Config
    for part in loc:
        field = section.model_fields.get(part)
        target = _section_type(field.annotation) if field else None
        if target is None:
            return None
        section = target
    return section


if __name__ == "__main__":  # python -m transformer_cli.config prints the README's reference table
    print(config_reference(), end="")
