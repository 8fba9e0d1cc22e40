#!/usr/bin/env bash
# The JavaScript package (docs/PACKAGE.md): the folder `npm pack` / `npm publish` takes, from the same Rust
# code as the app: the page's small wasm (which speaks the worker's protocol and exports the API), the app's
# worker and its wasm, and the hand-written entry, types and README of www/package/.
#
#   bash scripts/package.sh [--site DIR] [OUT]      OUT default: dist-package/seggpt-web
#
# --site DIR takes the wasm files of a site trunk has already built (the browser tests pass theirs);
# without it the release site is built first (`trunk build --release`, into dist/). OUT is replaced whole,
# and only once the package is complete: a stopped run leaves the old one (or none), never half of one.
set -euo pipefail
cd "$(dirname "$0")/.."

site=""
if [ "${1:-}" = "--site" ]; then
  [ $# -ge 2 ] || { echo "usage: bash scripts/package.sh [--site DIR] [OUT]" >&2; exit 2; }
  site=$2
  shift 2
fi
out=${1:-dist-package/seggpt-web}
[ $# -le 1 ] || { echo "usage: bash scripts/package.sh [--site DIR] [OUT]" >&2; exit 2; }

source scripts/web-tools.sh
if [ -z "$site" ]; then
  install_web_tools
  use_web_tools
  trunk build --release
  site=dist
fi
wasm_files=(seggpt-web.js seggpt-web_bg.wasm worker.js seggpt-worker.js seggpt-worker_bg.wasm)
for file in "${wasm_files[@]}"; do
  [ -f "$site/$file" ] || { echo "$site/$file is missing: build the site first (trunk build --release)" >&2; exit 1; }
done

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
mkdir -p "$(dirname "$out")"
staging=$(mktemp -d "${out%/}.partial.XXXXXX")
trap 'rm -rf "$staging"' EXIT
for file in "${wasm_files[@]}"; do cp "$site/$file" "$staging/"; done
cp www/package/index.js www/package/index.d.ts www/package/README.md "$staging/"
sed "s/\"version\": \"0.0.0\"/\"version\": \"$version\"/" www/package/package.json >"$staging/package.json"
rm -rf "$out"
mv "$staging" "$out"
trap - EXIT
echo "the package is in $out ($(du -sh "$out" | cut -f1)); npm pack $out makes its tarball"
