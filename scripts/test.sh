#!/usr/bin/env bash
# Every test of seggpt-web, with all set-up a fresh Debian machine needs. Safe to re-run:
# installs that are already present are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
dpkg -s mesa-vulkan-drivers >/dev/null 2>&1 || need_apt+=(mesa-vulkan-drivers)
dpkg -s libvulkan1 >/dev/null 2>&1 || need_apt+=(libvulkan1)
if ((${#need_apt[@]})); then
  echo "== installing ${need_apt[*]} (lavapipe: a Vulkan device on the CPU for the wgpu tests)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown

echo "== native tests (CPU backend and wgpu on lavapipe, fusion on)"
cargo test --release --locked

echo "== the library compiled to wasm32 (what the browser runs)"
cargo build --release --locked --lib --no-default-features --target wasm32-unknown-unknown

echo "== browser end-to-end (trunk site in headless Chromium, WebGPU on SwiftShader)"
wasm_bindgen_version=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"$/\1/p')
command -v trunk >/dev/null && trunk --version | grep -q ' 0\.21\.14' \
  || cargo install trunk --version 0.21.14 --locked
command -v wasm-bindgen >/dev/null && wasm-bindgen --version | grep -q " $wasm_bindgen_version" \
  || cargo install wasm-bindgen-cli --version "$wasm_bindgen_version"
if ! command -v chromium >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
[ -d node_modules/playwright-core ] && [ -d node_modules/pngjs ] || npm ci --no-audit --no-fund
trunk build --release
node tests/browser/e2e.mjs
echo "== all tests passed"
