# Sourced by serve.sh and test.sh: the tools that build the web app (each skipped when present).
rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
wasm_bindgen_version=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"$/\1/p')
command -v trunk >/dev/null && trunk --version | grep -q ' 0\.21\.14' \
  || cargo install trunk --version 0.21.14 --locked
command -v wasm-bindgen >/dev/null && wasm-bindgen --version | grep -q " $wasm_bindgen_version" \
  || cargo install wasm-bindgen-cli --version "$wasm_bindgen_version"
# wasm-opt for trunk's release build (www/index.html): binaryen from npm (package.json pins the version that
# Trunk.toml requires), found on PATH.
[ -x node_modules/.bin/wasm-opt ] || npm ci --no-audit --no-fund
export PATH="$PWD/node_modules/.bin:$PATH"
