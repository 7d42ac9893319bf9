//! Interop test of the Modbus poller against a Modbus server not written
//! here: pymodbus 3.16 (`tests/fixtures/modbus_server.py`), started by this
//! test as a Python subprocess.
//!
//! It covers every data type in every byte/word order, coils and discrete
//! inputs, a status register, NaN and infinity on the wire (faults, never
//! values), an exception (a read of an unmapped address → status 128), and a
//! dropped connection: the server is killed (→ status 16 readings, then the
//! offline detector's `mine_offline`), restarted on the same port (→ the
//! poller reconnects and values flow again, `mine_online`).
//!
//! A second test does the same reads over Modbus RTU on a serial line: a
//! pair of linked pseudo-terminals made by `socat`, pymodbus serving RTU on
//! one end and the poller's RTU transport on the other.
//!
//! Needs `MINEWATCH_PYTHON` = a Python with pymodbus 3.16 (and pyserial for
//! RTU; `.ci/run` makes one in `.venv`) and, for RTU, `socat`; without them
//! a test prints why it skipped and passes.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use minewatch::config::{Registry, parse};
use minewatch::ingest::modbus::{ModbusSource, Polled};
use minewatch::metrics::Metrics;
use minewatch::model::{Finding, status};
use minewatch::pipeline::{Clock, ShardCore, SystemClock};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

/// (type, order, value on the wire, scale, offset, expected reading).
const REGISTERS: &[(&str, &str, f64, f64, f64, f64)] = &[
    ("f32", "ABCD", 1.25, 1.0, 0.0, 1.25),
    ("f32", "CDAB", -3.5, 1.0, 0.0, -3.5),
    ("f32", "BADC", 0.75, 1.0, 0.0, 0.75),
    ("f32", "DCBA", 12.5, 1.0, 0.0, 12.5),
    ("u16", "ABCD", 54321.0, 1.0, 0.0, 54321.0),
    ("u16", "CDAB", 4660.0, 1.0, 0.0, 4660.0),
    ("u16", "BADC", 4660.0, 1.0, 0.0, 4660.0),
    ("u16", "DCBA", 305.0, 0.1, -5.0, 25.5),
    ("i16", "ABCD", -1234.0, 1.0, 0.0, -1234.0),
    ("i16", "CDAB", -32768.0, 1.0, 0.0, -32768.0),
    ("i16", "BADC", -2.0, 1.0, 0.0, -2.0),
    ("i16", "DCBA", 32767.0, 0.01, 0.0, 327.67),
    ("u32", "ABCD", 3_000_000_000.0, 1.0, 0.0, 3_000_000_000.0),
    ("u32", "CDAB", 70000.0, 1.0, 0.0, 70000.0),
    ("u32", "BADC", 123_456_789.0, 1.0, 0.0, 123_456_789.0),
    ("u32", "DCBA", 65536.0, 1.0, 0.0, 65536.0),
    ("i32", "ABCD", -2_000_000_000.0, 1.0, 0.0, -2_000_000_000.0),
    ("i32", "CDAB", -100_000.0, 1.0, 0.0, -100_000.0),
    ("i32", "BADC", -7.0, 1.0, 0.0, -7.0),
    ("i32", "DCBA", 5.0, 0.5, 1.0, 3.5),
];

const MINE: &str = "140121000001";
const WAIT: Duration = Duration::from_secs(20);

/// The Python to run pymodbus with, or why the test cannot run.
fn python() -> Result<String, String> {
    let py = std::env::var("MINEWATCH_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
        .ok_or("MINEWATCH_PYTHON is not set")?;
    let ok = Command::new(&py)
        .args([
            "-c",
            "import pymodbus, sys; sys.exit(0 if pymodbus.__version__.startswith('3.') else 1)",
        ])
        .status()
        .map_err(|e| format!("cannot run {py}: {e}"))?;
    if !ok.success() {
        return Err(format!("{py} has no pymodbus 3.x"));
    }
    Ok(py)
}

/// A pymodbus server process; killed when dropped.
struct PyServer(Child);

impl PyServer {
    fn start(py: &str, spec: &std::path::Path) -> PyServer {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/modbus_server.py"
        );
        let mut child = Command::new(py)
            .arg(script)
            .arg(spec)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the pymodbus server");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the server's first line");
        assert!(
            line.starts_with("listening"),
            "pymodbus server did not start: {line:?}"
        );
        PyServer(child)
    }

    fn kill(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for PyServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The point code of register map entry `i`.
fn point(i: usize) -> String {
    format!("{MINE}01MN0002{i:03}")
}

/// The server spec and the daemon config for the same registers, served on
/// TCP port `port`.
fn setup(port: u16) -> (Value, String) {
    setup_on(
        json!({"port": port}),
        &format!("address = \"127.0.0.1:{port}\""),
    )
}

/// The server spec and the daemon config for the same registers; `server`
/// says where pymodbus listens and `link` is the device's TOML for it.
fn setup_on(server: Value, link: &str) -> (Value, String) {
    let mut holding = Vec::new();
    let mut map = Vec::new();
    let mut address = 0u16;
    for (i, (ty, order, wire, scale, offset, _)) in REGISTERS.iter().enumerate() {
        holding.push(json!({"address": address, "type": ty, "order": order, "value": wire}));
        map.push(format!(
            "{{ point = \"{}\", address = {address}, type = \"{ty}\", order = \"{order}\", scale = {scale:?}, offset = {offset:?} }}",
            point(i)
        ));
        address += if ty.ends_with("16") { 1 } else { 2 };
    }
    let n = REGISTERS.len();
    // NaN and infinity on the wire, in a range of their own.
    holding.push(json!({"address": 200, "type": "f32", "order": "ABCD", "value": "nan"}));
    holding.push(json!({"address": 202, "type": "f32", "order": "CDAB", "value": "inf"}));
    map.push(format!(
        "{{ point = \"{}\", address = 200, type = \"f32\" }}",
        point(n)
    ));
    map.push(format!(
        "{{ point = \"{}\", address = 202, type = \"f32\", order = \"CDAB\" }}",
        point(n + 1)
    ));
    // Input registers: a CO value with a status register saying calibration.
    let input = json!([
        {"address": 0, "type": "f32", "order": "CDAB", "value": 24.0},
        {"address": 100, "type": "u16", "value": status::CALIBRATION},
    ]);
    map.push(format!(
        "{{ point = \"{}\", function = \"input\", address = 0, type = \"f32\", order = \"CDAB\", status_address = 100 }}",
        point(n + 2)
    ));
    // Bits.
    let coils = json!([{"address": 0, "value": true}, {"address": 1, "value": false}]);
    let discrete = json!([{"address": 5, "value": true}]);
    map.push(format!(
        "{{ point = \"{}\", function = \"coil\", address = 0 }}",
        point(n + 3)
    ));
    map.push(format!(
        "{{ point = \"{}\", function = \"coil\", address = 1 }}",
        point(n + 4)
    ));
    map.push(format!(
        "{{ point = \"{}\", function = \"discrete\", address = 5 }}",
        point(n + 5)
    ));
    // An address the server does not have: an exception.
    map.push(format!(
        "{{ point = \"{}\", address = 500, type = \"u16\" }}",
        point(n + 6)
    ));
    let points: Vec<String> = (0..n + 7)
        .map(|i| format!("{{ code = \"{}\", sensor = \"0002\" }}", point(i)))
        .collect();
    let config = format!(
        r#"
[modbus]
max_backoff_ms = 500

[[modbus.devices]]
name = "pymodbus"
mine = "{MINE}"
{link}
unit = 1
poll_ms = 200
timeout_ms = 150
retries = 1
registers = [
  {}
]

[[mines]]
code = "{MINE}"
name = "interop"
province = "140000"
city = "140100"
county = "140121"
polling_secs = 1
points = [
  {}
]
"#,
        map.join(",\n  "),
        points.join(",\n  ")
    );
    let mut spec = json!({"unit": 1, "holding": holding, "input": input,
                          "coils": coils, "discrete": discrete});
    if let (Some(spec), Some(server)) = (spec.as_object_mut(), server.as_object()) {
        spec.extend(server.clone());
    }
    (spec, config)
}

/// Asserts that poll `p` read every entry of [`REGISTERS`] (each type in
/// each order) as its expected value, stamped with the poll time.
fn assert_every_register(p: &Polled, registry: &Registry, over: &str) {
    for (i, (ty, order, _, _, _, want)) in REGISTERS.iter().enumerate() {
        let idx = registry.point(&point(i)).expect("point");
        let r = p
            .readings
            .iter()
            .find(|r| r.point == idx)
            .expect("a reading per point");
        assert_eq!(r.status, status::NORMAL, "{ty} {order} over {over}");
        assert!(
            (r.value - want).abs() <= want.abs() * 1e-12,
            "{ty} {order} over {over}: read {} want {want}",
            r.value
        );
        assert_eq!(r.ts, p.arrival, "event time is the poll time");
    }
}

/// Receives polls until one satisfies `check`, feeding every poll to the
/// shard core (and ticking it) so the offline detector sees them.
async fn until(
    rx: &mut mpsc::Receiver<Polled>,
    core: &mut ShardCore,
    findings: &mut Vec<Finding>,
    what: &str,
    mut check: impl FnMut(&Polled, &[Finding]) -> bool,
) -> Polled {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let p = tokio::time::timeout(left, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting until {what}"))
            .expect("the poller runs");
        core.process(&p.readings, p.arrival, findings);
        core.tick(SystemClock.now_ms(), findings);
        if check(&p, findings) {
            return p;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poller_reads_pymodbus_and_survives_its_death() {
    let py = match python() {
        Ok(p) => p,
        Err(why) => {
            // Straight to stderr: libtest would swallow println! of a
            // passing test.
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "skipped: set MINEWATCH_PYTHON to a python with pymodbus 3.16 \
                 (e.g. python3 -m venv .venv && .venv/bin/pip install pymodbus==3.16.1; \
                 MINEWATCH_PYTHON=$PWD/.venv/bin/python) to run the pymodbus interop test ({why})"
            );
            return;
        }
    };
    let port = minewatch::broker::free_port().expect("free port");
    let (spec, config_text) = setup(port);
    let dir = tempfile::tempdir().expect("tempdir");
    let spec_path = dir.path().join("spec.json");
    std::fs::write(&spec_path, spec.to_string()).expect("write spec");
    let (config, warnings) = parse(&config_text).expect("valid config");
    assert!(warnings.is_empty(), "{warnings:?}");
    let registry = Arc::new(Registry::build(&config, 1));
    let metrics = Arc::new(Metrics::new(1));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let source = ModbusSource::build(&config.modbus, &registry, metrics.clone(), clock)
        .expect("source builds");
    // Contiguous holding registers merge into one request.
    let plan = &source.links()[0].devices[0].plan;
    assert_eq!(plan.requests.len(), 7, "{:?}", plan.requests);

    let server = PyServer::start(&py, &spec_path);
    let (stop, stop_rx) = watch::channel(false);
    let (mut rx, tasks) = source.spawn(stop_rx);
    let mut core = ShardCore::new(registry.clone(), 0, SystemClock.now_ms());
    let mut findings = Vec::new();
    let n = REGISTERS.len();
    let idx = |code: &str| registry.point(code).expect("point");

    // Values: every type and order, as pymodbus encoded them.
    let good = until(
        &mut rx,
        &mut core,
        &mut findings,
        "values arrive",
        |p, _| p.readings.iter().any(|r| r.status == status::NORMAL),
    )
    .await;
    let reading = |p: &Polled, i: usize| {
        *p.readings
            .iter()
            .find(|r| r.point == idx(&point(i)))
            .expect("a reading per point")
    };
    assert_every_register(&good, &registry, "TCP");
    for i in [n, n + 1] {
        let r = reading(&good, i);
        assert!(r.value.is_nan(), "NaN/inf on the wire is no value: {r:?}");
        assert_eq!(r.status, status::SENSOR_FAULT);
    }
    let co = reading(&good, n + 2);
    assert_eq!((co.value, co.status), (24.0, status::CALIBRATION));
    assert_eq!(reading(&good, n + 3).value, 1.0);
    assert_eq!(reading(&good, n + 4).value, 0.0);
    assert_eq!(reading(&good, n + 5).value, 1.0);
    let unmapped = reading(&good, n + 6);
    assert!(unmapped.value.is_nan(), "an exception is never a value");
    assert_eq!(unmapped.status, status::SENSOR_FAULT);
    let exceptions = metrics
        .modbus_requests
        .with_label_values(&["pymodbus", "exception"])
        .get();
    assert!(exceptions >= 1, "the exception is counted");

    // The server dies: substation faults, then the mine goes offline.
    server.kill();
    until(
        &mut rx,
        &mut core,
        &mut findings,
        "status 16 readings",
        |p, _| {
            p.readings
                .iter()
                .all(|r| r.status == status::SUBSTATION_FAULT && r.value.is_nan())
        },
    )
    .await;
    until(
        &mut rx,
        &mut core,
        &mut findings,
        "the mine goes offline",
        |_, f| f.iter().any(|x| matches!(x, Finding::MineOffline { .. })),
    )
    .await;
    assert!(
        metrics
            .modbus_faults
            .with_label_values(&["pymodbus", "unreachable"])
            .get()
            > 0
    );

    // Back on the same port: reconnect, values, the mine comes back.
    let _server = PyServer::start(&py, &spec_path);
    let back = until(&mut rx, &mut core, &mut findings, "values again", |p, _| {
        p.readings.iter().any(|r| r.status == status::NORMAL)
    })
    .await;
    assert_eq!(reading(&back, 0).value, 1.25);
    assert!(
        findings
            .iter()
            .any(|x| matches!(x, Finding::MineOnline { .. })),
        "{findings:?}"
    );
    let _ = stop.send(true);
    for t in tasks {
        t.await.expect("poller stops");
    }
}

/// A `socat` pair of linked pseudo-terminals; killed when dropped.
struct SerialPair(Child);

impl Drop for SerialPair {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Why the RTU test cannot run here, if it cannot.
fn rtu_prerequisites(py: &str) -> Result<(), String> {
    let serial = Command::new(py)
        .args(["-c", "import serial"])
        .status()
        .map_err(|e| format!("cannot run {py}: {e}"))?;
    if !serial.success() {
        return Err(format!("{py} has no pyserial"));
    }
    match Command::new("socat")
        .arg("-V")
        .stdout(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => Ok(()),
        _ => Err("socat is not installed".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rtu_poller_reads_pymodbus_over_a_serial_line() {
    let py = match python().and_then(|py| rtu_prerequisites(&py).map(|()| py)) {
        Ok(p) => p,
        Err(why) => {
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "skipped: the RTU interop test needs MINEWATCH_PYTHON with pymodbus 3.16 and \
                 pyserial, and socat ({why})"
            );
            return;
        }
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (ours, theirs) = (dir.path().join("ttyA"), dir.path().join("ttyB"));
    let socat = SerialPair(
        Command::new("socat")
            .arg(format!("pty,raw,echo=0,link={}", ours.display()))
            .arg(format!("pty,raw,echo=0,link={}", theirs.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start socat"),
    );
    let deadline = Instant::now() + WAIT;
    while !(ours.exists() && theirs.exists()) {
        assert!(Instant::now() < deadline, "socat made no serial pair");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let link = format!(
        "transport = \"rtu\"\nport = \"{}\"\nbaud = 9600\nparity = \"none\"\ndata_bits = 8\nstop_bits = 1",
        ours.display()
    );
    let (spec, config_text) = setup_on(json!({"serial": theirs}), &link);
    let spec_path = dir.path().join("spec.json");
    std::fs::write(&spec_path, spec.to_string()).expect("write spec");
    let (config, warnings) = parse(&config_text).expect("valid config");
    assert!(warnings.is_empty(), "{warnings:?}");
    let registry = Arc::new(Registry::build(&config, 1));
    let metrics = Arc::new(Metrics::new(1));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let source = ModbusSource::build(&config.modbus, &registry, metrics.clone(), clock)
        .expect("source builds");
    let _server = PyServer::start(&py, &spec_path);
    let (stop, stop_rx) = watch::channel(false);
    let (mut rx, tasks) = source.spawn(stop_rx);
    let mut core = ShardCore::new(registry.clone(), 0, SystemClock.now_ms());
    let mut findings = Vec::new();
    let idx = |code: &str| registry.point(code).expect("point");
    let good = until(
        &mut rx,
        &mut core,
        &mut findings,
        "values arrive over RTU",
        |p, _| p.readings.iter().any(|r| r.status == status::NORMAL),
    )
    .await;
    let n = REGISTERS.len();
    let reading = |i: usize| {
        *good
            .readings
            .iter()
            .find(|r| r.point == idx(&point(i)))
            .expect("a reading per point")
    };
    assert_every_register(&good, &registry, "RTU");
    assert_eq!(reading(n + 3).value, 1.0, "a coil over RTU");
    let unmapped = reading(n + 6);
    assert!(unmapped.value.is_nan() && unmapped.status == status::SENSOR_FAULT);
    let _ = stop.send(true);
    for t in tasks {
        t.await.expect("poller stops");
    }
    drop(socat);
}
