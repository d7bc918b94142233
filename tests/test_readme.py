"""The README's "How it works" table names every module of the package, and only those."""

import re

from conftest import REPO


def test_how_it_works_lists_every_module_and_no_other():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## How it works", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `([\w/]+\.py)` \|", section, flags=re.MULTILINE))
    package = REPO / "transformer_cli"
    modules = {
        path.relative_to(package).as_posix()
        for path in package.rglob("*.py")
        if path.name not in ("__init__.py", "__main__.py")
    }
    assert listed == modules
