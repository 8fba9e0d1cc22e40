#!/usr/bin/env bash
# A folder to put on any static host: the release site, optionally its own weights beside it (in shards
# that fit the host's file-size limit; the page then loads them by default and nothing is fetched from
# another site), and the host files that make it work as it is (docs/HOSTING.md).
#
#   bash scripts/deploy.sh --out DIR [--weights DIR_OR_FILE] [--dtype f32|f16|q8] [--shard-size SIZE] [--site DIST]
#
#   --out DIR          the folder to write; it must not exist or be empty (nothing is overwritten)
#   --weights PATH     a SegGPT checkpoint (as `seggpt convert --model` takes it) to serve from DIR/model/;
#                      without it the page loads BAAI/seggpt-vit-large from the Hugging Face hub
#   --dtype D          how the weights are stored (default q8: 0.37 GB for the released model)
#   --shard-size SIZE  largest weights file (default 24MiB: under Cloudflare Pages' 25 MiB, GitHub Pages'
#                      100 MB and Netlify's limits, with room for each file's header)
#   --site DIST        a site already built with `trunk build --release` (default: build it now)
#
# A shell script rather than a `seggpt` command: the site is trunk's build, which the CLI does not run.
set -euo pipefail
cd "$(dirname "$0")/.."

out="" weights="" dtype="q8" shard_size="24MiB" site=""
usage() { sed -n '6,14p' "$0" >&2; exit 2; }
while (($#)); do
  case "$1" in
    --out) out=${2:-}; shift 2 ;;
    --weights) weights=${2:-}; shift 2 ;;
    --dtype) dtype=${2:-}; shift 2 ;;
    --shard-size) shard_size=${2:-}; shift 2 ;;
    --site) site=${2:-}; shift 2 ;;
    *) echo "deploy.sh: unknown argument $1" >&2; usage ;;
  esac
done
[ -n "$out" ] || { echo "deploy.sh: --out DIR is required" >&2; usage; }
if [ -e "$out" ] && [ -n "$(ls -A "$out" 2>/dev/null)" ]; then
  echo "deploy.sh: $out is not empty; give a new or empty folder (nothing is overwritten)" >&2
  exit 1
fi
case "$dtype" in f32|f16|q8) ;; *) echo "deploy.sh: --dtype is f32, f16 or q8" >&2; exit 2 ;; esac
if [ -n "$weights" ] && [ ! -e "$weights" ]; then
  echo "deploy.sh: the weights $weights do not exist" >&2
  exit 1
fi

# Everything is made in a temporary folder beside DIR and renamed into place at the end: a failed or
# interrupted run leaves no half-made site.
parent=$(dirname "$out")
mkdir -p "$parent"
work=$(mktemp -d "$parent/.deploy-XXXXXX")
trap 'rm -rf "$work"' EXIT

if [ -z "$site" ]; then
  source scripts/web-tools.sh
  install_web_tools
  use_web_tools
  trunk build --release --dist "$work/dist" >&2
  site="$work/dist"
fi
[ -f "$site/index.html" ] || { echo "deploy.sh: $site holds no index.html (build it with trunk build --release)" >&2; exit 1; }
mkdir -p "$work/site"
cp -R "$site/." "$work/site/"

if [ -n "$weights" ]; then
  cli="${SEGGPT_CLI:-}"
  if [ -z "$cli" ]; then
    cargo build --release --locked --quiet
    cli="${CARGO_TARGET_DIR:-target}/release/seggpt"
  fi
  "$cli" convert --model "$weights" --output "$work/site/model" --dtype "$dtype" --shard-size "$shard_size" >&2
  # The page loads these weights unless its address names others (?model=).
  sed -i 's|<meta name="viewport"|<meta name="seggpt-model" content="./model/">\n  <meta name="viewport"|' \
    "$work/site/index.html"
  grep -q 'name="seggpt-model"' "$work/site/index.html" \
    || { echo "deploy.sh: could not name the model in index.html" >&2; exit 1; }
fi

# The worker's wasm gzipped (43 MB -> about 8 MB): under every host's file-size limit, and smaller to
# download where the host does not compress. worker.js decompresses it as it streams in.
gzip -9 -n "$work/site/seggpt-worker_bg.wasm"
sed -i 's/^const GZIPPED_WASM = false;/const GZIPPED_WASM = true;/' "$work/site/worker.js"
sed -i "s/'seggpt-worker_bg.wasm'/'seggpt-worker_bg.wasm.gz'/" "$work/site/sw.js"
grep -q '^const GZIPPED_WASM = true;' "$work/site/worker.js" && grep -q "'seggpt-worker_bg.wasm.gz'" "$work/site/sw.js" \
  || { echo "deploy.sh: could not switch worker.js and sw.js to the gzipped wasm" >&2; exit 1; }

# Netlify and Cloudflare Pages read _headers. The weights are revalidated (the page asks with HEAD and
# keeps them in browser storage), never cached stale; the wasm is served as wasm.
cat >"$work/site/_headers" <<'HEADERS'
/*.wasm
  Content-Type: application/wasm
/model/*
  Cache-Control: no-cache
/*
  X-Content-Type-Options: nosniff
  Referrer-Policy: no-referrer
HEADERS

# nginx: the same, for a server of one's own.
cat >"$work/site/nginx.conf.example" <<'NGINX'
# Inside the server { } block that serves this folder as its root.
types { application/wasm wasm; }
gzip on;
gzip_types application/wasm application/javascript text/css application/json;
location /model/ {
    add_header Cache-Control "no-cache";
    etag on;
}
NGINX

mv "$work/site" "$work/ready"
mkdir -p "$out"
rmdir "$out"
mv "$work/ready" "$out"

largest=$(find "$out" -type f -printf '%s %P\n' | sort -n | tail -1)
total=$(du -sb "$out" | cut -f1)
echo "wrote $out: $(find "$out" -type f | wc -l) files, $total bytes; largest file: ${largest#* } (${largest%% *} bytes)"
if [ -n "$weights" ]; then
  echo "a first visit downloads the site and $(du -sb "$out/model" | cut -f1) bytes of weights (then kept in browser storage)"
fi
# A tensor larger than --shard-size is a shard of its own (a shard holds whole tensors).
bytes=${largest%% *}
for host in "Cloudflare Pages:26214400" "GitHub Pages:100000000"; do
  limit=${host##*:}
  if ((bytes > limit)); then
    echo "warning: the largest file is over ${host%%:*}'s limit of $limit bytes: choose another host, or a smaller --dtype" >&2
  fi
done
