#!/usr/bin/env bash
# The fault campaign (tests/faults.rs) against a Mosquitto of its own, on a
# free loopback port with persistence in a temporary folder, so that the
# campaign may restart it without touching any other broker: kill -9
# cycles of the daemon under QoS 1 load with the loss count, a broker
# restart, SIGTERM under load with a time bound, an oversized QoS 1 (the
# poison) and QoS 0 message. Fails (non-zero) on any loss or hang; the
# whole campaign is bounded by `timeout`.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v mosquitto >/dev/null 2>&1; then
  echo "FAILED: the fault campaign needs mosquitto (Debian's package)" >&2
  exit 1
fi
work="$(mktemp -d)"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
cat > "$work/mosquitto.conf" <<CONF
listener $port 127.0.0.1
allow_anonymous true
user root
persistence true
persistence_location $work/
pid_file $work/mosquitto.pid
max_queued_messages 0
log_dest file $work/mosquitto.log
CONF
stop_broker() {
  if [ -f "$work/mosquitto.pid" ]; then
    kill "$(cat "$work/mosquitto.pid")" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap stop_broker EXIT
mosquitto -d -c "$work/mosquitto.conf"
up() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }
for _ in $(seq 1 50); do up && break; sleep 0.1; done
if ! up; then
  echo "FAILED: the campaign's mosquitto did not start on port $port" >&2
  cat "$work/mosquitto.log" >&2 || true
  exit 1
fi
MINEWATCH_TEST_MQTT="127.0.0.1:$port" \
MINEWATCH_FAULTS_MOSQUITTO_CONF="$work/mosquitto.conf" \
  timeout 600 cargo test --test faults -- --ignored --nocapture
