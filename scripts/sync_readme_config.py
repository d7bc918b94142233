"""Rewrite the config reference table in README.md from the schema (tests/test_config.py checks it).

.venv/bin/python scripts/sync_readme_config.py
"""

from pathlib import Path

from transformer_cli.config import config_reference

README = Path(__file__).resolve().parent.parent / "README.md"
HEADER = "| key | type | default | meaning |"

text = README.read_text(encoding="utf-8")
start = text.index(HEADER)
end = text.index("\n\n", start) + 1
README.write_text(text[:start] + config_reference() + text[end:], encoding="utf-8")
print(f"updated the config reference in {README}")
