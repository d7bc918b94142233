"""The README's pictures, from the demo run (scripts/demo.sh trains runs/toy):

    .venv/bin/python scripts/make_readme_images.py [RUN_DIR] [--out docs]

docs/toy-curves.png (tcli plot), docs/toy-attention.png (tcli translate --attention, one demo
sentence) and docs/explain-masks.png (tcli explain --topic masks). Each is checked to stay under
150 KB.
"""

import argparse
import shutil
import tempfile
from pathlib import Path

from transformer_cli import load_run
from transformer_cli.attention_maps import attention_of_translations, write_attention_maps
from transformer_cli.curves import plot_training_curves
from transformer_cli.explain import explain_topic

SENTENCE = "The old man gives the child a red ball."
LIMIT = 150_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", default="runs/toy", type=Path)
    parser.add_argument("--out", default="docs", type=Path)
    args = parser.parse_args()
    written = [
        plot_training_curves([(args.run_dir, args.run_dir.name)], args.out / "toy-curves.png")
    ]
    run = load_run(args.run_dir, "cpu")
    with tempfile.TemporaryDirectory() as scratch:
        records = attention_of_translations(run, [SENTENCE])
        (picture,) = write_attention_maps(records, Path(scratch))
        written.append(Path(shutil.copy(picture, args.out / "toy-attention.png")))
        explain_topic("masks", Path(scratch))
        written.append(
            Path(shutil.copy(Path(scratch) / "masks.png", args.out / "explain-masks.png"))
        )
    for path in written:
        size = path.stat().st_size
        print(f"wrote {path} ({size / 1000:.0f} KB)")
        if size > LIMIT:
            raise SystemExit(f"{path} is {size} bytes, over the README's {LIMIT}")


if __name__ == "__main__":
    main()
