#!/usr/bin/env bash
# Builds the web app and serves it on http://127.0.0.1:8080 (default model: BAAI/seggpt-vit-large from the
# Hugging Face hub; `?model=URL` picks another). Installs what is missing, skips what is present.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/web-tools.sh
install_web_tools
use_web_tools
exec trunk serve --release --address 127.0.0.1 --port "${PORT:-8080}"
