"""Property tests: whatever config document or `--set` string a user writes, `load_config` returns
a config that survives being saved and read back, or raises tcli's own one-line error."""

from pathlib import Path

import pytest
import yaml
from conftest import REPO
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from transformer_cli.config import Config, _section_type, load_config, validate_config
from transformer_cli.errors import TcliError

TOY_PATH = REPO / "configs" / "toy.yaml"
TOY = TOY_PATH.read_text(encoding="utf-8")


def _dotted_keys(section: type[BaseModel], prefix: str = "") -> list[str]:
    """Every key of the schema, sections included: data, data.train, data.train.src, ..."""
    keys = []
    for name, field in section.model_fields.items():
        keys.append(prefix + name)
        if nested := _section_type(field.annotation):
            keys += _dotted_keys(nested, f"{prefix}{name}.")
    return keys


KEYS = _dotted_keys(Config)
NAMES = sorted({key.rsplit(".", 1)[-1] for key in KEYS})

# Keys as YAML may spell them: the schema's own names mostly, then junk of every hashable type.
yaml_keys = st.one_of(
    st.sampled_from(NAMES),
    st.sampled_from(["", "a\nb", "\u2028", "<<", "data.train"]),
    st.text(max_size=12),
    st.integers(),
    st.booleans(),
    st.none(),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),  # nan and inf included
    st.text(max_size=20),
    st.sampled_from(["unigram", "post", "greedy", "fused", "auto", "13a", "", "null", "1e3"]),
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(yaml_keys, children, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def mutated_configs(draw: st.DrawFn) -> str:
    """configs/toy.yaml with a few keys set to anything or deleted: most reach validation."""
    raw = yaml.safe_load(TOY)
    for _ in range(draw(st.integers(1, 3))):
        *parents, leaf = draw(st.sampled_from(KEYS)).split(".")
        node = raw
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        if draw(st.booleans()):
            node.pop(leaf, None)
        else:
            node[leaf] = draw(values)
    return yaml.safe_dump(raw, allow_unicode=True)


@st.composite
def edited_text(draw: st.DrawFn) -> str:
    """configs/toy.yaml with text spliced in: broken syntax, tabs, duplicate keys, anchors."""
    lines = TOY.splitlines(keepends=True)
    at = draw(st.integers(0, len(lines)))
    insert = draw(
        st.one_of(
            st.sampled_from(lines),  # a duplicate key (or section)
            st.sampled_from(["\t", "{", "]", ": :", "&a ", "*a", "<<: *a\n", "? [1]\n: 2\n", "!!"]),
            st.text(max_size=30),
        )
    )
    return "".join(lines[:at]) + insert + "".join(lines[at:])


documents = st.one_of(
    mutated_configs(),
    edited_text(),
    values.map(lambda value: yaml.safe_dump(value, allow_unicode=True)),  # often not a mapping
    st.text(max_size=200),
    # nested past Python's recursion limit, a list that holds itself, a list as a key
    st.sampled_from(["[" * 1000, "a: " + "{a: " * 1000, "&a [*a]", "? [a]\n: 1"]),
)


@pytest.fixture(scope="module")
def config_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("properties") / "config.yaml"


def _check(path: Path, overrides: list[str] = ()) -> str | None:
    """Load; a config must round-trip through its saved YAML. Returns the error message, if any."""
    try:
        config = load_config(path, overrides)
    except TcliError as err:
        message = str(err)
        assert message and len(message.splitlines()) == 1, message
        return message
    assert validate_config(yaml.safe_load(config.to_yaml())) == config
    return None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=documents)
def test_any_document_is_a_config_or_a_one_line_error_naming_the_file(config_path, document):
    config_path.write_text(document, encoding="utf-8")
    message = _check(config_path)
    assert message is None or str(config_path) in message


@settings(max_examples=50, deadline=None)
@given(document=st.binary(max_size=100))
def test_any_bytes_are_a_config_or_a_one_line_error_naming_the_file(config_path, document):
    config_path.write_bytes(document)
    message = _check(config_path)
    assert message is None or str(config_path) in message


set_keys = st.one_of(
    st.sampled_from(KEYS), st.from_regex(r"[a-z_ \n]{1,5}(\.[a-z_ \n]{1,5}){0,2}", fullmatch=True)
)
set_values = st.one_of(
    st.sampled_from(["1", "0.5", "true", "null", "beam", "learned", "[0.9, 0.99]", "{tsv: a}"]),
    values.map(lambda value: yaml.safe_dump(value, default_flow_style=True).strip()),
    st.text(max_size=30),
    st.sampled_from(["[" * 1000, "{a: [1, {b: }", "!!binary ///", "x" * 100_000, "—ü中"]),
)
# Mostly KEY=VALUE items, which get past parsing into validation; then text of any kind.
set_items = st.one_of(
    st.lists(st.builds("{}={}".format, set_keys, set_values), min_size=1, max_size=3),
    st.lists(st.text(alphabet=".=[]{}:, ab\n\tü中") | st.text(), min_size=1, max_size=2),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(overrides=set_items)
def test_any_set_is_a_config_or_a_one_line_error_naming_it(overrides):
    message = _check(TOY_PATH, overrides)
    assert message is None or "--set" in message or str(TOY_PATH) in message
