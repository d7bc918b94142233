"""Whatever bytes come in, `tcli translate` writes one line per input line, exits 0 and warns once
about what it had to change: invalid UTF-8 (read as U+FFFD) and over-long lines (cut)."""

import io
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from conftest import tcli
from hypothesis import given, settings
from hypothesis import strategies as st

from transformer_cli.cli import app
from transformer_cli.data.corpus import decode_lines, first_line_numbers
from transformer_cli.translator import load_run

CAP = 40  # decode.max_input_tokens for the in-process examples: long lines get cut, cheaply

# One line's bytes (its "\n" removed: that is what ends a line): any Unicode (NUL, BOM, U+2028
# included), ASCII with the C0 and C1 control characters (lone CRs too), arbitrary bytes (mostly
# invalid UTF-8), and very long lines.
line_bytes = st.one_of(
    st.text().map(str.encode),
    st.text(st.characters(max_codepoint=0x9F)).map(str.encode),
    st.binary(max_size=30),
    st.builds(lambda word, n: word * n, st.binary(min_size=1, max_size=6), st.integers(20, 400)),
).map(lambda raw: raw.replace(b"\n", b""))


@st.composite
def raw_inputs(draw: st.DrawFn) -> bytes:
    """Lines ending in LF, CRLF or CR CR LF, perhaps with a last line (maybe empty) without one."""
    lines = draw(st.lists(line_bytes, max_size=6))
    data = b"".join(line + draw(st.sampled_from([b"\n", b"\r\n", b"\r\r\n"])) for line in lines)
    return data + draw(st.one_of(st.just(b""), line_bytes))


class _Stdio:
    """Stands in for sys.stdin or sys.stdout: the CLI reads and writes their binary buffers."""

    def __init__(self, data: bytes = b"") -> None:
        self.buffer = io.BytesIO(data)

    def isatty(self) -> bool:
        return False  # piped input: translated in batches


class _Messages(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _warnings() -> Iterator[list[str]]:
    """The messages tcli logs meanwhile."""
    handler = _Messages()
    logger = logging.getLogger("transformer_cli")
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


@pytest.fixture(scope="module")
def loaded_run(run_dir):
    run = load_run(run_dir, device="cpu")
    run.decode = run.decode.model_copy(update={"max_input_tokens": CAP})
    return run


def _translate_in_process(run, data: bytes) -> bytes:
    """`tcli translate RUN_DIR` with `data` piped in, in this process and with `run` loaded
    already (loading it each time would cost more than translating)."""
    stdout = _Stdio()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("transformer_cli.translator.load_run", lambda *args: run)
        patch.setattr(sys, "stdin", _Stdio(data))
        patch.setattr(sys, "stdout", stdout)
        app(["translate", "RUN_DIR"], prog_name="tcli", standalone_mode=False)
    return stdout.buffer.getvalue()


@settings(max_examples=40, deadline=None)
@given(data=raw_inputs())
def test_any_input_gives_one_output_line_per_line_and_one_warning_per_kind(loaded_run, data):
    with _warnings() as messages:
        output = _translate_in_process(loaded_run, data).decode("utf-8")
    lines = io.BytesIO(data).readlines()  # as `wc -l` counts them, and an unended last one
    texts = list(decode_lines(io.BytesIO(data), "stdin", replace_invalid=True))
    # one line each, which no reader splits further (no CR, U+2028, ... inside a translation)
    translations = output.split("\n")
    assert translations.pop() == "" and len(translations) == len(lines)
    assert output.splitlines() == translations
    assert all(out == "" for out, text in zip(translations, texts, strict=True) if not text)

    invalid = [number for number, raw in enumerate(lines, start=1) if not _is_utf8(raw)]
    utf8 = [message for message in messages if "UTF-8" in message]
    if len(invalid) == 1:
        assert utf8 == [
            f"stdin:{invalid[0]}: not valid UTF-8 text; read its invalid bytes as U+FFFD"
        ]
    elif invalid:
        assert utf8 == [
            f"stdin: {len(invalid)} lines are not valid UTF-8 text (lines "
            f"{first_line_numbers(invalid)}); read their invalid bytes as U+FFFD"
        ]
    else:
        assert utf8 == []

    encoded = loaded_run.tokenizers.source.encode(texts)
    long = [number for number, ids in enumerate(encoded, start=1) if len(ids) > CAP]
    cut = [message for message in messages if "translating" in message]
    assert len(cut) == (1 if long else 0)
    if len(long) == 1:
        assert cut[0].startswith(f"input line {long[0]} has ")
    elif long:
        assert cut[0].endswith(f": lines {first_line_numbers(long)}")
    assert len(messages) == len(utf8) + len(cut)


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# Line by line: NUL; a lone CR inside a line; CRLF; invalid UTF-8; 20,000 characters; blank.
NASTY = (
    b"The dog.\x00 sleeps\nThe cat\rsleeps.\nA dog.\r\nThe \xff\xfe cat.\n"
    + b"The old man gives the child a red ball. " * 500
    + b"\n\n"
)


def _assert_two_warnings(stderr: str, invalid_line: str) -> None:
    assert "Traceback" not in stderr
    invalid, cut = stderr.splitlines()
    assert invalid.startswith(f"{invalid_line}: not valid UTF-8 text")
    assert cut.startswith("input line 5 has ") and cut.endswith(
        "tokens; translating its first 1024 (decode.max_input_tokens)"
    )


def test_nasty_input_on_stdin_ending_in_a_lone_cr(run_dir):
    result = tcli("translate", run_dir, "--device", "cpu", stdin=NASTY + b"\r")
    translations = result.stdout.split("\n")
    assert translations.pop() == "" and len(translations) == 7
    assert translations[5] == translations[6] == ""  # blank in, blank out
    _assert_two_warnings(result.stderr, "stdin:4")


def test_nasty_input_file_ending_without_a_newline_with_beam_search(run_dir, tmp_path):
    source, output = tmp_path / "nasty.txt", tmp_path / "out.txt"
    source.write_bytes(NASTY + b"The end, without a newline")
    result = tcli(
        "translate",
        run_dir,
        "--input",
        source,
        "--output",
        output,
        "--beam",
        "2",
        "--device",
        "cpu",
    )
    assert len(output.read_text(encoding="utf-8").splitlines()) == 7
    _assert_two_warnings(result.stderr, f"--input: {source}:4")
