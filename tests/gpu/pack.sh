#!/usr/bin/env bash
# Packs the GPU kit (tests/gpu/README.md), here on x86-64 Linux, for tests/gpu/run.sh on the
# device machine, which has no Rust, no network and takes at most 64 MiB of files a call:
#   .gpu/speed/     the release CLI and the products bench (stripped, xz), MiniLM's config,
#                   tokenizer and tensor layout (run.sh makes up the weights), the digits, movie
#                   snippets and Tiny Shakespeare
#   .gpu/accuracy/  the CLI, MiniLM's weights in F16 (xz), every labelled movie snippet
#   .gl/            the Vulkan loader (Debian's libvulkan1), as the device README says
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/burnish/target}"
export PATH="$HOME/.cargo/bin:$PATH"
[ -f .assets/minilm/model.safetensors ] || cargo xtask setup

cargo build --release -p burnish-cli
bench=$(cargo bench --no-run -p burnish-tests --bench products --message-format=json 2>/dev/null |
  python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "products" and m.get("executable"):
        print(m["executable"])')
[ -x "$bench" ] || { echo "pack.sh: the products bench did not build"; exit 1; }

rm -rf .gpu
mkdir -p .gpu/speed/minilm .gpu/accuracy/minilm
pack() { strip -o "$2.tmp" "$1" && xz -T0 -6 -c "$2.tmp" > "$2.xz" && rm "$2.tmp"; }
pack "$CARGO_TARGET_DIR/release/burnish" .gpu/speed/burnish
pack "$bench" .gpu/speed/products
cp .gpu/speed/burnish.xz .gpu/accuracy/
for kit in speed accuracy; do cp .assets/minilm/config.json .assets/minilm/tokenizer.json ".gpu/$kit/minilm/"; done
python3 tests/gpu/weights.py header .assets/minilm/model.safetensors .gpu/speed/minilm/header.json
cp .assets/digits.csv.gz .assets/movie_sentiment.csv .assets/tinyshakespeare.txt .gpu/speed/
python3 tests/gpu/weights.py f16 .assets/minilm/model.safetensors .gpu/accuracy/minilm/model.safetensors
xz -T0 -6 .gpu/accuracy/minilm/model.safetensors
python3 tests/gpu/weights.py snippets .assets/movie_reviews.tsv .gpu/accuracy/reviews.csv

if ! ls .gl/libvulkan1_*.deb >/dev/null 2>&1; then
  lists=$(mktemp -d)
  mkdir -p .gl "$lists/partial"
  o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 "-oDir::State::Lists=$lists")
  apt-get "${o[@]}" update -qq
  (cd .gl && apt-get "${o[@]}" download libvulkan1)
  rm -rf "$lists"
fi
du -sh .gpu/speed .gpu/accuracy .gl
echo "pack.sh: carry [\".gl\", \".gpu/speed\"] for 'bash tests/gpu/run.sh speed', [\".gl\", \".gpu/accuracy\"] for 'accuracy'"
