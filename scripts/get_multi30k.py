#!/usr/bin/env python3
"""Download the Multi30k task-1 English-German corpus, verify it, and write the files that
configs/multi30k.yaml names: data/multi30k/{train,valid,test}.{en,de}.gz.

    python3 scripts/get_multi30k.py [--out data/multi30k]

Multi30k (Elliott et al. 2016, WMT16 multimodal task 1) has 29,000 training, 1,014 validation and
1,000 test sentence pairs (test = test2016 "flickr"). The archives come from the first mirror that
answers; each must match one of the known SHA-256 sums of its archive (the mirrors repackaged
the test archive), and every extracted file must match the SHA-256 sum published for it and
have its published line count. Standard library only. Files already present and correct are
kept; offline, the script stops with a one-line message and exit code 2.
"""

import argparse
import gzip
import hashlib
import io
import os
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

MIRRORS = (
    "https://raw.githubusercontent.com/neychev/small_DL_repo/master/datasets/Multi30k/",
    "http://www.quest.dcs.shef.ac.uk/wmt16_files_mmt/",
)


@dataclass(frozen=True)
class Split:
    archive: str  # file name on the mirrors
    archive_sha256: frozenset[str]  # the known packagings
    members: dict[str, str]  # language -> file name inside the archive
    member_sha256: dict[str, str]  # language -> SHA-256 of that file
    lines: int


# Sums as published with torchtext's Multi30k dataset.
SPLITS = {
    "train": Split(
        "training.tar.gz",
        frozenset({"20140d013d05dd9a72dfde46478663ba05737ce983f478f960c1123c6671be5e"}),
        {"en": "train.en", "de": "train.de"},
        {
            "en": "4b4d37e774976ef44fecca1738cdeb3b3ba384851a59a755b9c5e6aa7d87b13c",
            "de": "695df46f6fd14567e69970408a2c129a50e778a910ecb1585a92eb25b2c7accc",
        },
        29_000,
    ),
    "valid": Split(
        "validation.tar.gz",
        frozenset({"a7aa20e9ebd5ba5adce7909498b94410996040857154dab029851af3a866da8c"}),
        {"en": "val.en", "de": "val.de"},
        {
            "en": "40cd20974079d9afb0e3d27c659a8e059cc2fcf850b4bc23ede13fc36dd8a865",
            "de": "fd0fc009db2446cfc12d96a382aff0d3122cb47577b352d0f7e0bb3a38e2e552",
        },
        1_014,
    ),
    "test": Split(
        "mmt16_task1_test.tar.gz",
        frozenset(
            {
                "0681be16a532912288a91ddd573594fbdd57c0fbb81486eff7c55247e35326c2",
                "6d1ca1dba99e2c5dd54cae1226ff11c2551e6ce63527ebb072a1f70f72a5cd36",
            }
        ),
        {"en": "test.en", "de": "test.de"},
        {
            "en": "399a4382932c1aadd3ceb9bef1008d388a64c76d4ae4e9d4728c6f4301cac182",
            "de": "c1d2f544471a7387e37d15f1adf075ff7d6fe57a30840bb969281ae102d24cb1",
        },
        1_000,
    ),
}


class Failure(Exception):
    """Why the corpus could not be made; printed as one line."""


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


def download(split: Split, get: Callable[[str], bytes]) -> bytes:
    """The split's archive from the first mirror that has a known version of it."""
    problems = []
    for mirror in MIRRORS:
        url = mirror + split.archive
        try:
            data = get(url)
        except (urllib.error.URLError, OSError, TimeoutError) as err:
            problems.append(f"{url}: {getattr(err, 'reason', err)}")
            continue
        digest = hashlib.sha256(data).hexdigest()
        if digest in split.archive_sha256:
            return data
        problems.append(f"{url}: unknown SHA-256 {digest}")
    raise Failure(f"cannot download {split.archive} ({'; '.join(problems)}); are you offline?")


def extract(archive: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        for member in tar.getmembers():
            if member.isfile() and Path(member.name).name == name:
                return tar.extractfile(member).read()
    raise Failure(f"the archive has no {name}")


def verified(data: bytes, split: Split, lang: str, what: str) -> bytes:
    digest = hashlib.sha256(data).hexdigest()
    if digest != split.member_sha256[lang]:
        raise Failure(f"{what}: SHA-256 {digest}, expected {split.member_sha256[lang]}")
    lines = data.count(b"\n")
    if lines != split.lines:
        raise Failure(f"{what}: {lines} lines, expected {split.lines}")
    return data


def write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    os.replace(tmp, path)


def make_corpus(out: Path, get: Callable[[str], bytes] | None = None) -> list[Path]:
    """Write every split's files into `out` (skipping those already there and correct)."""
    get = get or fetch
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, split in SPLITS.items():
        targets = {lang: out / f"{name}.{lang}.gz" for lang in split.members}
        if all(_is_correct(path, split, lang) for lang, path in targets.items()):
            continue
        archive = download(split, get)
        for lang, path in targets.items():
            text = verified(extract(archive, split.members[lang]), split, lang, split.members[lang])
            write_atomically(
                path, gzip.compress(text, mtime=0)
            )  # mtime 0: the same bytes each time
            written.append(path)
    return written


def _is_correct(path: Path, split: Split, lang: str) -> bool:
    try:
        verified(gzip.decompress(path.read_bytes()), split, lang, str(path))
    except (OSError, EOFError, Failure):
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/multi30k"))
    args = parser.parse_args(argv)
    try:
        written = make_corpus(args.out)
    except Failure as err:
        print(f"get_multi30k: error: {err}", file=sys.stderr)
        return 2
    print(f"{args.out}: {len(written)} file(s) written, all six verified")
    return 0


if __name__ == "__main__":
    sys.exit(main())
