"""The peer benchmark: minewatch against the tools people would pick instead
(a Node-RED flow and a plain paho-mqtt script), on the same traffic from one
Mosquitto that this script starts, in alternated runs.

    python3 benches/peers/run.py [--rounds 3] [--messages 20000]
        [--systems minewatch,minewatch-no-archive,node-red,paho] [--json OUT]

What it does (BENCHMARKS.md shows the figures and how to read them):

1. builds minewatch and the publisher in release (`--no-build` skips it),
   installs Node-RED (pinned in node-red/package.json) with npm and
   paho-mqtt in benches/peers/.venv when they are missing;
2. starts Mosquitto on a free port (no queue limit, so nothing is dropped
   for a slow subscriber);
3. runs the publisher alone, to show it is not the limit;
4. for each round, for each system in turn: starts the system, waits until
   it has subscribed, runs the publisher (benches/peers/publisher.rs: 20
   mines x 32 points, QoS 1 JSON batches of 500 readings, methane crossings
   of the 1.0 % line), and stops when every mine's last crossing has raised
   its alert; the system is stopped after each run;
5. reports per run: readings/s (readings / first publish to the last
   alert), CPU-seconds of the system per million readings, the share of
   the two cores each process used (system, broker, publisher), the
   system's peak RSS, and whether every crossing raised exactly one
   over-limit alert.

minewatch runs with its whole detector suite, the journal (fsync before the
acknowledgement), SQLite alert store and, unless `-no-archive`, the Parquet
archive; the peers only apply the threshold rule and keep nothing.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
SYSTEMS = ["minewatch", "minewatch-no-archive", "node-red", "paho"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_secs(pid: int) -> float:
    """User + system CPU of a process and its threads, seconds."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * PAGE


def hwm_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def wait_for(pred, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.05)
    raise SystemExit(f"peers: timed out waiting for {what}")


def sh(cmd, **kw) -> None:
    print("+ " + " ".join(str(c) for c in cmd), flush=True)
    subprocess.run(cmd, check=True, **kw)


def prepare_tools(args) -> Path:
    """Builds and installs what the run needs; returns the venv's python."""
    if not args.no_build:
        sh(["cargo", "build", "--release", "--bin", "minewatch", "--example", "peer_publisher"],
           cwd=ROOT)
    if not (HERE / "node-red" / "node_modules" / "node-red").exists():
        sh(["npm", "ci", "--no-audit", "--no-fund"], cwd=HERE / "node-red")
    venv = HERE / ".venv"
    py = venv / "bin" / "python"
    if not py.exists():
        sh([sys.executable, "-m", "venv", str(venv)])
    check = subprocess.run([str(py), "-c", "import paho.mqtt"], capture_output=True)
    if check.returncode != 0:
        sh([str(py), "-m", "pip", "install", "--quiet", "paho-mqtt==2.1.0"])
    return py


class Alerts:
    """Over-limit alerts raised by the system under test, from the broker."""

    def __init__(self, py: Path, port: int, work: Path):
        # The collector runs in the venv (paho) as a child: one JSON line
        # per raised over-limit alert, with its receipt time.
        self.proc = subprocess.Popen(
            [str(py), "-u", "-c", COLLECTOR, str(port)],
            stdout=subprocess.PIPE, text=True,
        )
        self.lock = threading.Lock()
        self.raised: dict[str, int] = {}
        self.last_at = 0.0
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self.ready.wait(10):
            raise SystemExit("peers: the alert collector did not subscribe")

    def _read(self) -> None:
        for line in self.proc.stdout:
            if line.strip() == "ready":
                self.ready.set()
                continue
            ev = json.loads(line)
            with self.lock:
                self.raised[ev["point"]] = self.raised.get(ev["point"], 0) + 1
                self.last_at = ev["at"]

    def snapshot(self):
        with self.lock:
            return dict(self.raised), self.last_at

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


# Subscribes to minewatch's alerts/# and the peers' bench/alerts/#, prints a
# line per raised over-limit alert: {"point", "at"} (Unix seconds).
COLLECTOR = r"""
import json, sys, time
import paho.mqtt.client as mqtt
port = int(sys.argv[1])
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"peer-alerts-{port}-{time.time_ns()}")
def on_connect(c, u, f, rc, p):
    c.subscribe([("alerts/#", 1), ("bench/alerts/#", 1)])
def on_subscribe(c, u, mid, codes, p):
    print("ready", flush=True)
def on_message(c, u, msg):
    at = time.time()
    try:
        v = json.loads(msg.payload)
    except ValueError:
        return
    if msg.topic.startswith("bench/"):
        if v.get("event") != "raised":
            return
        point = v.get("point")
    else:
        a = v.get("alert") or {}
        if v.get("event") != "raised" or a.get("kind") != "overlimit":
            return
        point = a.get("point")
    print(json.dumps({"point": point, "at": at}), flush=True)
c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
c.connect("127.0.0.1", port, 60)
c.loop_forever()
"""


def start_system(name: str, port: int, work: Path, plan_dir: Path, py: Path, run_id: str):
    """Starts a system under test; returns (Popen, log path) once it has subscribed."""
    log = work / f"{name}-{run_id}.log"
    out = open(log, "w", encoding="utf-8")
    if name.startswith("minewatch"):
        data = work / f"data-{run_id}"
        cfg = work / f"{name}-{run_id}.toml"
        archive = "false" if name.endswith("no-archive") else "true"
        header = (
            f'[daemon]\ndata_dir = "{data}"\n\n'
            f'[mqtt]\nbroker = "mqtt://127.0.0.1:{port}"\nclient_id = "minewatch-{run_id}"\n\n'
            f'[http]\nlisten = "127.0.0.1:0"\n\n'
            f"[archive]\nenabled = {archive}\n\n"
            "[rules]\nregroup_secs = 0\n"
        )
        cfg.write_text(header + (plan_dir / "minewatch.toml").read_text(encoding="utf-8"),
                       encoding="utf-8")
        binary = ROOT / "target" / "release" / "minewatch"
        proc = subprocess.Popen([str(binary), "run", "--config", str(cfg)],
                                stdout=out, stderr=subprocess.STDOUT)
        marker = "mqtt connected"
    elif name == "node-red":
        env = dict(os.environ, PEER_MQTT_PORT=str(port), PEER_POINTS=str(plan_dir / "points.json"),
                   PEER_HTTP_PORT=str(free_port()))
        user_dir = work / f"node-red-{run_id}"
        user_dir.mkdir()
        red = HERE / "node-red" / "node_modules" / "node-red" / "red.js"
        proc = subprocess.Popen(["node", str(red), "--settings", str(HERE / "node-red" / "settings.js"),
                                 "--userDir", str(user_dir)],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
        marker = "Connected to broker"
    elif name == "paho":
        proc = subprocess.Popen([str(py), "-u", str(HERE / "paho_rule.py"), str(port),
                                 str(plan_dir / "points.json")],
                                stdout=out, stderr=subprocess.STDOUT)
        marker = "ready"
    else:
        raise SystemExit(f"peers: unknown system {name}")

    def up() -> bool:
        if proc.poll() is not None:
            raise SystemExit(f"peers: {name} exited at start; see {log}")
        return marker in log.read_text(encoding="utf-8", errors="replace")

    wait_for(up, 60, f"{name} to connect")
    time.sleep(1.5)  # its SUBSCRIBE is answered right after the connect
    return proc, log


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def publisher_cmd(port: int, args) -> list:
    return [str(ROOT / "target" / "release" / "examples" / "peer_publisher"), "send",
            "--port", str(port), "--messages", str(args.messages), "--mines", "20",
            "--points", "32", "--per-message", "500", "--cross-every", "47"]


def run_publisher(port: int, args, on_plan=None):
    """Runs the publisher; returns (summary, its CPU seconds from the first publish)."""
    proc = subprocess.Popen(publisher_cmd(port, args), stdout=subprocess.PIPE, text=True)
    summary, cpu, encoded_cpu = None, 0.0, 0.0
    sampler_stop = threading.Event()

    def sample():
        nonlocal cpu
        while not sampler_stop.is_set():
            try:
                cpu = cpu_secs(proc.pid)
            except (FileNotFoundError, ProcessLookupError, IndexError):
                return
            time.sleep(0.05)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    for line in proc.stdout:
        v = json.loads(line)
        if "plan" in v:
            # The traffic is encoded before the plan is printed: that CPU
            # is not publishing.
            encoded_cpu = cpu
            if on_plan:
                on_plan(v["plan"])
        else:
            summary = v
    proc.wait()
    sampler_stop.set()
    t.join()
    if proc.returncode != 0 or summary is None:
        raise SystemExit("peers: the publisher failed")
    return summary, cpu - encoded_cpu


def one_run(name: str, port: int, broker_pid: int, work: Path, plan_dir: Path, py: Path,
            run_id: str, args) -> dict:
    alerts = Alerts(py, port, work)
    proc, log = start_system(name, port, work, plan_dir, py, run_id)
    try:
        cpu0, broker0 = cpu_secs(proc.pid), cpu_secs(broker_pid)
        plan = {}
        peak_rss = 0
        done = threading.Event()
        result = {}

        def watch():
            nonlocal peak_rss
            deadline = None
            while True:
                peak_rss = max(peak_rss, rss_bytes(proc.pid))
                raised, last_at = alerts.snapshot()
                if plan and all(raised.get(p, 0) >= n for p, n in plan.items()):
                    result["end_at"] = last_at
                    result["cpu"] = cpu_secs(proc.pid)
                    result["broker_cpu"] = cpu_secs(broker_pid)
                    done.set()
                    return
                if proc.poll() is not None:
                    result["error"] = f"{name} exited during the run"
                    done.set()
                    return
                if result.get("published") and deadline is None:
                    deadline = time.monotonic() + args.drain_secs
                if deadline is not None and time.monotonic() > deadline:
                    result["error"] = f"not every crossing alerted {args.drain_secs} s after the last publish"
                    result["end_at"] = time.time()
                    result["cpu"] = cpu_secs(proc.pid)
                    result["broker_cpu"] = cpu_secs(broker_pid)
                    done.set()
                    return
                time.sleep(0.02)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        summary, pub_cpu = run_publisher(port, args, on_plan=plan.update)
        result["published"] = True
        done.wait()
        time.sleep(args.settle_secs)  # duplicates arrive late, if at all
        raised, _ = alerts.snapshot()
        peak_rss = max(peak_rss, hwm_bytes(proc.pid))
    finally:
        stop(proc)
        alerts.stop()
    readings = summary["readings"]
    wall = result["end_at"] - summary["first_publish_ms"] / 1000
    missing = sum(max(0, n - raised.get(p, 0)) for p, n in plan.items())
    extra = sum(max(0, raised.get(p, 0) - plan.get(p, 0)) for p in raised)
    cpu = result["cpu"] - cpu0
    return {
        "system": name,
        "run": run_id,
        "readings": readings,
        "crossings": summary["crossings"],
        "wall_s": round(wall, 3),
        "readings_per_s": round(readings / wall),
        "cpu_s": round(cpu, 3),
        "cpu_s_per_million": round(cpu / readings * 1e6, 3),
        "system_cores": round(cpu / wall, 3),
        "broker_cores": round((result["broker_cpu"] - broker0) / wall, 3),
        "publisher_cores": round(pub_cpu / wall, 3),
        "publish_s": round((summary["last_puback_ms"] - summary["first_publish_ms"]) / 1000, 3),
        "peak_rss_mb": round(peak_rss / 2**20, 1),
        "missing_alerts": missing,
        "extra_alerts": extra,
        "exact": missing == 0 and extra == 0 and "error" not in result,
        "error": result.get("error"),
        "loadavg": open("/proc/loadavg", encoding="ascii").read().split()[0],
        "log": str(log),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--messages", type=int, default=20_000,
                    help="messages of 500 readings per run (default 20000: 10 M readings)")
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--drain-secs", type=float, default=300)
    ap.add_argument("--settle-secs", type=float, default=2)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--json", help="write every run's figures to this file")
    args = ap.parse_args()
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    for s in systems:
        if s not in SYSTEMS:
            raise SystemExit(f"peers: unknown system {s!r}; known: {', '.join(SYSTEMS)}")
    if not shutil.which("mosquitto") and not Path("/usr/sbin/mosquitto").exists():
        raise SystemExit("peers: mosquitto is needed (Debian package mosquitto)")
    py = prepare_tools(args)

    work = Path(tempfile.mkdtemp(prefix="minewatch-peers-"))
    plan_dir = work / "plan"
    sh([str(ROOT / "target" / "release" / "examples" / "peer_publisher"), "prepare",
        str(plan_dir), "--mines", "20", "--points", "32"])
    port = free_port()
    conf = work / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_queued_messages 0\nmax_queued_bytes 0\nmax_inflight_messages 100\n"
        "log_dest stderr\n",
        encoding="ascii",
    )
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    broker = subprocess.Popen([mosquitto, "-c", str(conf)],
                              stderr=open(work / "mosquitto.log", "w", encoding="utf-8"))
    runs = []
    try:
        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                return True
            except OSError:
                return False

        wait_for(listening, 10, "mosquitto")
        summary, pub_cpu = run_publisher(port, args)
        alone = (summary["last_puback_ms"] - summary["first_publish_ms"]) / 1000
        print(f"publisher alone: {summary['readings'] / alone:,.0f} readings/s "
              f"({pub_cpu / alone:.2f} cores), nobody subscribed", flush=True)
        for r in range(args.rounds):
            for name in systems:
                run = one_run(name, port, broker.pid, work, plan_dir, py, f"{r + 1}-{name}", args)
                runs.append(run)
                print(json.dumps(run), flush=True)
    finally:
        broker.terminate()
        broker.wait()
    if args.json:
        Path(args.json).write_text(json.dumps({
            "publisher_alone_readings_per_s": round(summary["readings"] / alone),
            "runs": runs,
        }, indent=1), encoding="utf-8")

    print("\n| system | readings/s | CPU-s per M readings | system cores | broker cores "
          "| publisher cores | peak RSS MB | every crossing one alert |")
    print("|---|---|---|---|---|---|---|---|")
    for name in systems:
        rs = [r for r in runs if r["system"] == name]

        def span(key, fmt="{:,.0f}"):
            vals = sorted(r[key] for r in rs)
            med = statistics.median(vals)
            return f"{fmt.format(med)} ({fmt.format(vals[0])}–{fmt.format(vals[-1])})"

        exact = sum(r["exact"] for r in rs)
        print(f"| {name} | {span('readings_per_s')} | {span('cpu_s_per_million', '{:.2f}')} "
              f"| {span('system_cores', '{:.2f}')} | {span('broker_cores', '{:.2f}')} "
              f"| {span('publisher_cores', '{:.2f}')} | {span('peak_rss_mb', '{:.0f}')} "
              f"| {exact}/{len(rs)} runs |")
    print(f"\nwork directory (logs, configs): {work}")


if __name__ == "__main__":
    main()
