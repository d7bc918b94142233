#!/usr/bin/env bash
# The demo: set up .venv, train configs/toy.yaml on the bundled English→German corpus,
# translate a few sentences, and score the test set. Safe to run again (it retrains runs/toy).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv plot
tcli=.venv/bin/tcli

echo "== training (configs/toy.yaml)"
"$tcli" train configs/toy.yaml --out runs/toy --overwrite

echo "== translating"
printf '%s\n' \
    "The old man gives the child a red ball." \
    "Today we do not see the big dogs." \
    "I know that the woman reads the book." \
    | "$tcli" translate runs/toy

echo "== scoring the test set"
"$tcli" eval runs/toy
