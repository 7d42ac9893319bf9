#!/usr/bin/env bash
# Runs the patrol-desk browser test: installs Debian's Chromium (and CJK
# fonts for readable screenshots) when missing, installs playwright-core from
# the lock file, starts `minewatch demo` on free ports, signs in as the demo's
# county regulator of 140481 and runs patrol.mjs. Screenshots go to
# docs/screenshots/. Needs a built debug binary (cargo build; CARGO_TARGET_DIR
# is honoured).
set -euo pipefail
cd "$(dirname "$0")"
root="$(cd ../.. && pwd)"

if [ ! -x /usr/bin/chromium ] || ! fc-list 2>/dev/null | grep -qi "noto sans cjk"; then
  (apt-get install -y -qq chromium fonts-noto-cjk || (apt-get update -qq && apt-get install -y -qq chromium fonts-noto-cjk)) >/dev/null 2>&1 || true
fi
if [ ! -x /usr/bin/chromium ]; then
  echo "FAILED: Debian's chromium is needed for the browser test and could not be installed" >&2
  exit 1
fi
npm ci --no-audit --no-fund --silent >/dev/null

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http=$(port); hook=$(port); mqtt=$(port)
data=$(mktemp -d)
"${CARGO_TARGET_DIR:-$root/target}/debug/minewatch" demo --seconds 600 --data-dir "$data" --http-port "$http" \
  --hook-port "$hook" --mqtt-port "$mqtt" --modbus-port 0 >"$data/demo.log" 2>&1 &
demo=$!
trap 'kill $demo 2>/dev/null || true; wait $demo 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$http/healthz" >/dev/null 2>&1 && break
  sleep 0.2
done
node patrol.mjs "http://127.0.0.1:$http" "${MINEWATCH_BROWSER_USER:-county-140481}" \
  "${MINEWATCH_BROWSER_PASSWORD:-minewatch-demo}" 140481 "$root/docs/screenshots"
