#!/usr/bin/env bash
# The browser's half of scripts/test.sh (which runs it in the background): the web tools, the two release
# wasm32 builds with clippy's lints and their checks, then the site the browser tests load (trunk, with
# the test hooks). Usage: bash scripts/build-site.sh WASM_TARGET_DIR. Prints each step's time.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=$1
source scripts/web-tools.sh

step_start=$(date +%s)
step() { # name: prints the time of the step that just ended
  local now
  now=$(date +%s)
  printf '%6d s  site: %s\n' $((now - step_start)) "$1"
  step_start=$now
}

install_web_tools
use_web_tools
step "web tools (trunk, wasm-bindgen-cli, npm packages)"

# The page's wasm: the library without burn (a use of the model there fails to compile). The worker's:
# the library with burn, and the package that exports it.
with_clippy cargo build --release --locked --lib --no-default-features --target wasm32-unknown-unknown
with_clippy cargo build --release --locked -p seggpt-worker --target wasm32-unknown-unknown
step "the page's and the worker's release wasm32 builds, clippy -D warnings"

# `cargo tree -i burn` fails when burn is not in the graph, as it must not be in the page's.
if cargo tree --locked --target wasm32-unknown-unknown -e normal --no-default-features -i burn >/dev/null 2>&1; then
  echo "the page's wasm32 build depends on burn (it must load before the model's code)" >&2
  exit 1
fi
if cargo tree --locked -p seggpt-worker --target wasm32-unknown-unknown -e features | grep 'feature "autotune"' >/dev/null; then
  echo "the worker's wasm32 build has burn's autotune (it compiles kernels the browser may refuse)" >&2
  exit 1
fi
# The site people host is these builds: the tests' crash hook (`?debug=panic`, feature test-hooks) must
# not be in them.
for wasm in seggpt.wasm seggpt_worker.wasm; do
  if grep -q "debug panic requested" "$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/$wasm"; then
    echo "the release wasm32 build $wasm contains the test hooks" >&2
    exit 1
  fi
done

# The site to host is `trunk build --release`, without test hooks; the tests build theirs with
# `?debug=panic` (a worker crash on request) into dist/ too, so rebuild before deploying.
trunk build --release --features test-hooks
step "the site with trunk (test hooks on)"
