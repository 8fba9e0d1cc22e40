#!/usr/bin/env bash
# Every test of seggpt-web, with all set-up a fresh Debian machine needs. Safe to re-run: installs that
# are already present are skipped.
#
#   bash scripts/test.sh          the default tier (what CI runs)
#   bash scripts/test.sh --full   also the second tier: the slow, size-driven checks (full-width kernel
#                                 parity on lavapipe, full-size f16), each with a small twin in the default
#                                 tier that fails on the same bugs (tests named `tier2_*`, ignored by default)
#
# Every phase runs even when an earlier test phase failed, so one failure does not hide the others; the
# script exits non-zero if any did, and prints each phase's time at the end.
set -uo pipefail
cd "$(dirname "$0")/.."

full=false
case "${1:-}" in
  --full) full=true ;;
  "") ;;
  *) echo "usage: bash scripts/test.sh [--full]" >&2; exit 2 ;;
esac

source scripts/web-tools.sh  # install_web_tools, use_web_tools, with_clippy

phases=()
failures=()
phase_start=$(date +%s)
phase_name=""
run_start=$phase_start
begin() { # name: ends the running phase and starts the next
  local now
  now=$(date +%s)
  [ -n "$phase_name" ] && phases+=("$(printf '%6d s  %s' $((now - phase_start)) "$phase_name")")
  phase_name=$1
  phase_start=$now
  echo "== $1"
}
failure_logs=()
check() { # label command...: runs a test step, records a failure (and keeps its output) and goes on
  local label=$1 log
  shift
  log=$(mktemp)
  "$@" 2>&1 | tee "$log"
  if ((PIPESTATUS[0])); then
    failures+=("$label")
    failure_logs+=("$log")
  else
    rm -f "$log"
  fi
}
failure_digest() { # the lines that say why each failed step failed, again at the very end of the output
  local i
  for i in "${!failures[@]}"; do
    echo "== why ${failures[$i]} failed"
    grep -E -A12 '^FAIL |panicked at|^---- .* stdout ----|^error(\[|:)|^Diff|Left:' "${failure_logs[$i]}" | head -80
  done
}
summary() {
  begin "done"
  echo "== phase times"
  printf '%s\n' "${phases[@]}"
  printf '%6d s  total\n' $(($(date +%s) - run_start))
}
fail_now() { # a set-up or build step failed: nothing after it can run
  echo "$1 failed" >&2
  summary
  exit 1
}

begin "set-up: system packages, toolchain components"
need_apt=()
dpkg -s mesa-vulkan-drivers >/dev/null 2>&1 || need_apt+=(mesa-vulkan-drivers)
dpkg -s libvulkan1 >/dev/null 2>&1 || need_apt+=(libvulkan1)
command -v chromium >/dev/null || need_apt+=(chromium)
if ((${#need_apt[@]})); then
  echo "installing ${need_apt[*]} (lavapipe: a Vulkan device on the CPU for the wgpu tests; Chromium for the browser tests)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null; } \
    || fail_now "apt-get install"
fi
for component in rustfmt clippy; do
  rustup component list --installed | grep -q "^$component" || rustup component add "$component" || fail_now "rustup"
done
rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown \
  || fail_now "rustup"

# Every temporary file of this run (the browser suites' profiles, each with a stored model, the CLI's
# outputs, the native tests' folders: gigabytes a run) goes to a folder of its own, removed at the end, so
# that runs do not fill the disk; a browser's storage quota shrinks as the disk fills, and a nearly full disk
# breaks the service worker's install in ux.mjs.
run_tmp=$(mktemp -d "${TMPDIR:-/tmp}/seggpt-test-run.XXXXXX")
trap 'rm -rf "$run_tmp"' EXIT
export TMPDIR=$run_tmp

# The browser's half (web tools, the two wasm32 builds, the site) builds in the background, in its own
# build folder, while the native half builds and tests in the foreground: a large crate's front end runs
# on one core, and the other half fills the other. Its log and phase times are printed when it is awaited.
native_target="${CARGO_TARGET_DIR:-$PWD/target}"
wasm_target="${SEGGPT_WASM_TARGET_DIR:-$native_target-wasm}"
web_log=$(mktemp)
(bash scripts/build-site.sh "$wasm_target" >"$web_log" 2>&1) &
web_pid=$!

begin "formatting"
check "cargo fmt" cargo fmt --all --check

begin "native build with clippy -D warnings (lib, CLI, every test target)"
with_clippy cargo test --release --locked --no-run || fail_now "the native build or its lints"

begin "native tests (CPU backend; wgpu on lavapipe with fusion, f32 and f16)"
# With the same wrapper as the build, so that cargo reuses it (the wrapper is part of the fingerprint).
# burn's autotuner at its lowest level: it still picks among the kernels, but times each candidate less,
# and on lavapipe that timing is a quarter of a wgpu test's time. The tolerances hold for any kernel.
export CUBECL_AUTOTUNE_LEVEL=minimal
check "native tests" with_clippy cargo test --release --locked --no-fail-fast
if $full; then
  begin "native tests, second tier (tier2_*: full-width and full-size checks, minutes each)"
  check "native tests, second tier" with_clippy cargo test --release --locked --no-fail-fast -- --ignored tier2_
fi

begin "waiting for the site (built in the background since set-up)"
web_ok=true
wait "$web_pid" || web_ok=false
cat "$web_log"
$web_ok || fail_now "building the site (its log is above)"
use_web_tools

begin "browser tests (trunk site in headless Chromium: WebGPU on SwiftShader, and the CPU in wasm)"
# e2e.mjs runs on both devices. The other suites run on the device the page itself picks here, the CPU
# in wasm (SwiftShader, a software adapter, is passed over); their tests about the GPU itself run on
# WebGPU. The second tier runs them all on SwiftShader's WebGPU as well (tests/browser/server.mjs).
check "e2e.mjs" node tests/browser/e2e.mjs        # the user journeys, every mask compared with the CLI's
check "e2e.mjs on the CPU" env E2E_DEVICE=cpu node tests/browser/e2e.mjs  # the same without WebGPU: the CPU in wasm
browser_suites() { # label suffix: the suites whose subject is not the device
  check "worker.mjs$1" node tests/browser/worker.mjs  # model storage: revalidation, offline, damaged copies, message order
  check "ux.mjs$1" node tests/browser/ux.mjs          # accessibility (axe-core), offline through the service worker, screenshots
  check "video.mjs$1" node tests/browser/video.mjs    # the Video panel and the Live camera, every mask compared with `seggpt video`
  check "tune.mjs$1" node tests/browser/tune.mjs      # tuning in the page: the tuned prompt equal to `seggpt tune`'s
  check "sam.mjs$1" node tests/browser/sam.mjs        # click to select (SAM): every mask equal to `seggpt sam`'s
  check "bench.mjs$1" node tests/browser/bench.mjs    # the page's Benchmark (?bench, Copy as JSON) and a q8 checkpoint
}
browser_suites ""
check "package.mjs" node tests/browser/package.mjs  # the npm package (on the CPU): its files, its example page, its API and errors
if $full; then
  begin "browser tests, second tier (the suites on SwiftShader's WebGPU)"
  BROWSER_DEVICE=webgpu browser_suites " on WebGPU"
fi

summary
if ((${#failures[@]})); then
  failure_digest
  echo "== FAILED: ${failures[*]}" >&2
  exit 1
fi
echo "== all tests passed"
