"""The Multi30k recipe, offline: the downloader on locally made archives of the real shape, and
configs/multi30k.yaml training on gzipped files named as the downloader writes them."""

import gzip
import hashlib
import importlib.util
import io
import subprocess
import tarfile
import urllib.error
from pathlib import Path

import pytest
from conftest import REPO

from transformer_cli import load_run
from transformer_cli.config import load_config
from transformer_cli.errors import DataError
from transformer_cli.train import train

spec = importlib.util.spec_from_file_location("get_multi30k", REPO / "scripts" / "get_multi30k.py")
get_multi30k = importlib.util.module_from_spec(spec)
spec.loader.exec_module(get_multi30k)

TOY = REPO / "data" / "toy-en-de"
SIZES = {"train": 200, "valid": 20, "test": 20}


def _archive(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def local_mirror(monkeypatch) -> dict[str, bytes]:
    """Archives like the real ones (same names inside) made from the toy corpus, with their sums."""
    archives, splits = {}, {}
    for name, split in get_multi30k.SPLITS.items():
        texts = {
            lang: "".join(
                line + "\n"
                for line in (TOY / f"{name}.{lang}").read_text("utf-8").splitlines()[: SIZES[name]]
            ).encode()
            for lang in ("en", "de")
        }
        archive = _archive({split.members[lang]: texts[lang] for lang in texts})
        archives[split.archive] = archive
        splits[name] = get_multi30k.Split(
            split.archive,
            frozenset({hashlib.sha256(archive).hexdigest()}),
            split.members,
            {lang: hashlib.sha256(text).hexdigest() for lang, text in texts.items()},
            SIZES[name],
        )
    monkeypatch.setattr(get_multi30k, "SPLITS", splits)
    return archives


def test_downloads_verify_and_write_gzipped_files(local_mirror, tmp_path):
    asked = []

    def fetch(url):
        asked.append(url)
        return local_mirror[url.rsplit("/", 1)[1]]

    written = get_multi30k.make_corpus(tmp_path, fetch)
    names = sorted(path.name for path in written)
    assert names == sorted(f"{s}.{l}.gz" for s in SIZES for l in ("en", "de"))  # noqa: E741
    train_en = gzip.decompress((tmp_path / "train.en.gz").read_bytes()).decode().splitlines()
    assert train_en == (TOY / "train.en").read_text("utf-8").splitlines()[:200]
    assert len(asked) == 3
    assert get_multi30k.make_corpus(tmp_path, fetch) == [] and len(asked) == 3  # nothing again


def test_falls_back_to_the_next_mirror(local_mirror, tmp_path):
    def fetch(url):
        if url.startswith(get_multi30k.MIRRORS[0]):
            raise urllib.error.URLError("mirror down")
        return local_mirror[url.rsplit("/", 1)[1]]

    assert len(get_multi30k.make_corpus(tmp_path, fetch)) == 6


def test_a_file_with_the_wrong_checksum_is_refused(local_mirror, tmp_path, monkeypatch):
    split = get_multi30k.SPLITS["valid"]
    wrong = {**split.member_sha256, "de": "0" * 64}
    monkeypatch.setitem(get_multi30k.SPLITS, "valid", get_multi30k.Split(
        split.archive, split.archive_sha256, split.members, wrong, split.lines
    ))  # fmt: skip
    with pytest.raises(get_multi30k.Failure, match=r"val\.de: SHA-256 .*, expected 0000"):
        get_multi30k.make_corpus(tmp_path, lambda url: local_mirror[url.rsplit("/", 1)[1]])
    assert not (tmp_path / "valid.de.gz").exists()


def test_offline_is_one_line_and_exit_code_2(tmp_path, monkeypatch, capsys):
    def offline(url):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(get_multi30k, "fetch", offline)
    assert get_multi30k.main(["--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("get_multi30k: error: cannot download")
    assert "are you offline?" in error[0]


def test_the_multi30k_config_trains_on_files_of_that_shape(tmp_path, monkeypatch):
    data = tmp_path / "data" / "multi30k"
    data.mkdir(parents=True)
    for split, size in SIZES.items():
        for lang in ("en", "de"):
            lines = (TOY / f"{split}.{lang}").read_text("utf-8").splitlines()[:size]
            with gzip.open(data / f"{split}.{lang}.gz", "wt", encoding="utf-8") as file:
                file.write("".join(line + "\n" for line in lines))
    monkeypatch.chdir(tmp_path)  # the config's paths are relative, as written for the repo root
    config = load_config(
        REPO / "configs" / "multi30k.yaml",
        ["model.d_model=32", "model.n_heads=2", "model.d_ff=64", "tokenizer.vocab_size=300",
         "train.max_minutes=null", "train.max_steps=3", "train.eval_every=3",
         "decode.beam_size=2"],
    )  # fmt: skip
    result = train(config, Path("runs/multi30k"), device="cpu")
    assert result.steps == 3
    run = load_run("runs/multi30k", device="cpu")
    assert len(run.translate(["A man rides a horse.", "Two dogs play."])) == 2


def test_training_before_the_download_names_the_training_files_and_the_downloader(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # no data/multi30k here
    config = load_config(REPO / "configs" / "multi30k.yaml")
    with pytest.raises(DataError) as caught:
        train(config, Path("runs/multi30k"), device="cpu")
    message = str(caught.value)
    assert message.startswith("data files not found: data.train.src data/multi30k/train.en.gz, ")
    assert message.endswith("; get them with: bash scripts/get_multi30k.sh (data.download)")
    assert not Path("runs").exists()


def test_the_gpu_variant_is_a_valid_config():
    config = load_config(REPO / "configs" / "multi30k-gpu.yaml")
    assert config.train.precision == "auto" and config.model.attention == "fused"


def test_the_shell_entry_point_runs_the_downloader():
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "get_multi30k.sh"), "--help"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and "--out" in done.stdout and "Multi30k" in done.stdout
