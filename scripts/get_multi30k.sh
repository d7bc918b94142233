#!/usr/bin/env bash
# Download and verify the Multi30k task-1 English-German corpus into data/multi30k/.
# Usage: bash scripts/get_multi30k.sh [--out DIR]   (the work is in get_multi30k.py: stdlib only)
exec python3 "$(dirname "$0")/get_multi30k.py" "$@"
