# Sourced by serve.sh, test.sh and build-site.sh: the tools that build the web app (each skipped when
# present). `install_web_tools` installs them; `use_web_tools` puts them on PATH; `with_clippy` runs a
# cargo build with clippy's lints.
wasm_bindgen_version=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"$/\1/p')
trunk_version=0.21.14

# Neither registry reached here ships a prebuilt trunk or wasm-bindgen-cli, so both are compiled.
# They orchestrate the build and are not what users run, so they are compiled for build speed:
# no LTO, many codegen units, opt-level 1 (which keeps wasm-bindgen's pass over the worker's wasm
# at about a second). Their build folder is separate from the project's, so it survives
# `cargo clean` and never invalidates the project's builds.
install_cargo_tool() { # crate version [cargo install flags...]
  local crate=$1 version=$2
  shift 2
  CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=64 \
    CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_INCREMENTAL=false \
    CARGO_TARGET_DIR="${SEGGPT_TOOLS_TARGET_DIR:-$HOME/.cache/seggpt-web/tools}" \
    cargo install --quiet "$crate" --version "$version" "$@"
}

install_web_tools() {
  rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
  command -v trunk >/dev/null && trunk --version | grep -q " $trunk_version" \
    || install_cargo_tool trunk "$trunk_version" --locked
  command -v wasm-bindgen >/dev/null && wasm-bindgen --version | grep -q " $wasm_bindgen_version" \
    || install_cargo_tool wasm-bindgen-cli "$wasm_bindgen_version"
  # wasm-opt for trunk's release build (www/index.html): binaryen from npm (package.json pins the version
  # that Trunk.toml requires), with the browser tests' packages.
  [ -x node_modules/.bin/wasm-opt ] && [ -d node_modules/playwright-core ] && [ -d node_modules/pngjs ] \
    && [ -d node_modules/axe-core ] || npm ci --no-audit --no-fund --loglevel=error
}

use_web_tools() {
  export PATH="$PWD/node_modules/.bin:$HOME/.cargo/bin:$PATH"
}

# Clippy runs as the compiler of the workspace's own crates in the builds the tests need (cargo's
# RUSTC_WORKSPACE_WRAPPER, the mechanism `cargo clippy` itself uses), so its lints cost no second compile
# of burn, wgpu and cubecl in check mode. CLIPPY_ARGS is how `cargo clippy -- -D warnings` hands its
# arguments to the driver. The wrapper is part of cargo's fingerprint: run the tests with it too, or the
# workspace's crates are compiled again.
with_clippy() {
  RUSTC_WORKSPACE_WRAPPER="$(rustup which clippy-driver)" CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings" "$@"
}
