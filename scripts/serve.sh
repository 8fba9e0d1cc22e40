#!/usr/bin/env bash
# Builds the web app and serves it on http://127.0.0.1:8080 (default model: BAAI/seggpt-vit-large from the
# Hugging Face hub; `?model=URL` picks another). Installs what is missing, skips what is present.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
wasm_bindgen_version=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"$/\1/p')
command -v trunk >/dev/null && trunk --version | grep -q ' 0\.21\.14' \
  || cargo install trunk --version 0.21.14 --locked
command -v wasm-bindgen >/dev/null && wasm-bindgen --version | grep -q " $wasm_bindgen_version" \
  || cargo install wasm-bindgen-cli --version "$wasm_bindgen_version"
exec trunk serve --release --address 127.0.0.1 --port "${PORT:-8080}"
