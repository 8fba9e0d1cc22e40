#!/usr/bin/env bash
# Every test of seggpt-web, with all set-up a fresh Debian machine needs. Safe to re-run:
# installs that are already present are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
dpkg -s mesa-vulkan-drivers >/dev/null 2>&1 || need_apt+=(mesa-vulkan-drivers)
dpkg -s libvulkan1 >/dev/null 2>&1 || need_apt+=(libvulkan1)
command -v chromium >/dev/null || need_apt+=(chromium)
if ((${#need_apt[@]})); then
  echo "== installing ${need_apt[*]} (lavapipe: a Vulkan device on the CPU for the wgpu tests; Chromium for the browser tests)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt
rustup component list --installed | grep -q '^clippy' || rustup component add clippy
source scripts/web-tools.sh

echo "== formatting and lints (native, and the wasm32 library the browser runs: the page's build and the worker's)"
cargo fmt --all --check
cargo clippy --release --locked --all-targets -- -D warnings
# The page's wasm: the library without burn (a use of the model there fails to compile).
cargo clippy --release --locked --lib --no-default-features --target wasm32-unknown-unknown -- -D warnings
# The worker's wasm (worker/): the library with burn, and the package that exports it.
cargo clippy --release --locked --lib --no-default-features --features burn --target wasm32-unknown-unknown -- -D warnings
cargo clippy --release --locked -p seggpt-worker --target wasm32-unknown-unknown -- -D warnings

echo "== native tests (CPU backend; wgpu on lavapipe with fusion, f32 and f16)"
cargo test --release --locked

echo "== the two wasm32 builds (what the browser runs): the page's without burn, the worker's without autotune"
cargo build --release --locked --lib --no-default-features --target wasm32-unknown-unknown
cargo build --release --locked -p seggpt-worker --target wasm32-unknown-unknown
# `cargo tree -i burn` fails when burn is not in the graph, as it must not be in the page's.
if cargo tree --locked --target wasm32-unknown-unknown -e normal --no-default-features -i burn >/dev/null 2>&1; then
  echo "the page's wasm32 build depends on burn (it must load before the model's code)" >&2
  exit 1
fi
if cargo tree --locked -p seggpt-worker --target wasm32-unknown-unknown -e features | grep 'feature "autotune"' >/dev/null; then
  echo "the worker's wasm32 build has burn's autotune (it compiles kernels the browser may refuse)" >&2
  exit 1
fi
# The site people host is these builds: the tests' crash hook (`?debug=panic`, feature test-hooks) must not be in them.
for wasm in seggpt.wasm seggpt_worker.wasm; do
  if grep -q "debug panic requested" "${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/release/$wasm"; then
    echo "the release wasm32 build $wasm contains the test hooks" >&2
    exit 1
  fi
done

echo "== browser tests (trunk site in headless Chromium, WebGPU on SwiftShader)"
[ -d node_modules/playwright-core ] && [ -d node_modules/pngjs ] && [ -d node_modules/axe-core ] \
  || npm ci --no-audit --no-fund
# The site to host is `trunk build --release`, without test hooks; the tests build theirs with
# `?debug=panic` (a worker crash on request) into dist/ too, so rebuild before deploying.
trunk build --release --features test-hooks
node tests/browser/e2e.mjs      # the user journeys, every mask compared with the CLI's
node tests/browser/worker.mjs   # model storage: revalidation, offline, damaged copies, message order
node tests/browser/ux.mjs       # accessibility (axe-core), offline through the service worker, screenshots
node tests/browser/video.mjs    # the Video panel and the Live camera, every mask compared with `seggpt video`
node tests/browser/tune.mjs     # tuning in the page: the tuned prompt equal to `seggpt tune`'s, its masks to `segment --tuned-prompt`'s
node tests/browser/bench.mjs    # the page's Benchmark (?bench, Copy as JSON) and a q8 checkpoint in the page
echo "== all tests passed"
