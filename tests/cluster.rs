//! Cluster mode end to end: a nats-server of the test's own (JetStream,
//! its MQTT listener, the partition mapping), three `minewatch run`
//! instances on a fresh schema of the PostgreSQL at `MINEWATCH_TEST_PG`,
//! and mines publishing MQTT QoS 1 to NATS. One instance (not the leader)
//! is killed with SIGKILL while ingesting, in the middle of an over-limit
//! episode on every mine; later it is restarted and rejoins.
//!
//! Checked: the survivors take the dead instance's partitions, the first
//! live message reaching the shards at most 15 s after the kill; every
//! reading NATS acknowledged to the mines is in the union of the three
//! archives (duplicates counted and printed); every scripted over-limit
//! episode of the dead instance's mines is exactly one alert; every alert
//! transition reaches the webhook exactly once; no silence alert is raised
//! while the mines publish (a new owner watches only once caught up).
//!
//! Runs when nats-server is installed and `MINEWATCH_TEST_PG` is set
//! (`.ci/run` does both); otherwise it says so and passes.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::process::archived_readings;
use serde_json::{Value, json};

const PARTITIONS: u16 = 8;
const MINES: usize = 12;
const POINTS: usize = 3;
/// Rounds of publishing: one message per mine each, 1 s of event time
/// apart, every `ROUND`.
const ROUNDS: usize = 320;
const ROUND: Duration = Duration::from_millis(100);
/// The round at which one instance is killed.
const KILL_AT: usize = 100;
/// Over-limit episodes of point 1 on every mine (rounds, end exclusive):
/// the first runs across the kill, the second after the takeover.
const EPISODES: [(usize, usize); 2] = [(80, 130), (250, 270)];
const WAIT: Duration = Duration::from_secs(90);
const SECRET: &str = "cluster-secret";

fn nats_server() -> Option<PathBuf> {
    [
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
        "/usr/local/bin/nats-server",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn mine(i: usize) -> String {
    format!("1401210000{i:02}")
}

fn point(mine: &str, i: usize) -> String {
    format!("{mine}01MN0001{i:03}")
}

/// A nats-server child, killed when dropped.
struct Nats(Child);

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_nats(dir: &Path, port: u16, mqtt: u16) -> Nats {
    let conf = dir.join("nats.conf");
    std::fs::write(
        &conf,
        format!(
            "server_name: mw_test\nport: {port}\nhost: 127.0.0.1\n\
             jetstream {{ store_dir: \"{store}\" }}\n\
             mqtt {{ listen: \"127.0.0.1:{mqtt}\" }}\n\
             mappings = {{ \"mines.*.*\": \"part.{{{{partition({PARTITIONS},1)}}}}.mines.{{{{wildcard(1)}}}}.{{{{wildcard(2)}}}}\" }}\n",
            store = dir.join("js").display()
        ),
    )
    .expect("nats config");
    let log = std::fs::File::create(dir.join("nats.log")).expect("log");
    let child = Command::new(nats_server().expect("nats-server"))
        .arg("-c")
        .arg(&conf)
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start nats-server");
    let nats = Nats(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nats-server did not start:\n{}",
            common::log_tail(&dir.join("nats.log"))
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    nats
}

fn config(dir: &Path, id: &str, nats: u16, store: &str, hook: &str) -> PathBuf {
    let mut toml = format!(
        "[daemon]\ndata_dir = \"{data}\"\nshards = 2\ntick_ms = 200\n\n\
         [mqtt]\npublish_alerts = false\n\n\
         [http]\nlisten = \"127.0.0.1:0\"\n\n\
         [archive]\nenabled = true\nflush_secs = 5\n\n\
         [cluster]\nenabled = true\nnats_url = \"nats://127.0.0.1:{nats}\"\ninstance_id = \"{id}\"\n\
         partitions = {PARTITIONS}\nlease_ttl_secs = 6\nwarmup_secs = 600\n\n\
         [alerting]\nstore = \"{store}\"\n\n\
         [[alerting.channels]]\nname = \"county-hook\"\nkind = \"webhook\"\nurl = \"{hook}\"\n\
         secret = \"{SECRET}\"\ngroup_wait_ms = 0\n\n\
         [[alerting.routes]]\nname = \"county\"\njurisdiction = \"140121\"\n\
         kinds = [\"overlimit\", \"evacuation\"]\nchannels = [\"county-hook\"]\n\n\
         [[users]]\nname = \"harness\"\nrole = \"admin\"\n",
        data = dir.join(id).display(),
    );
    for m in 0..MINES {
        let code = mine(m);
        toml.push_str(&format!(
            "\n[[mines]]\ncode = \"{code}\"\nname = \"m{m}\"\nprovince = \"140000\"\n\
             city = \"140100\"\ncounty = \"140121\"\npolling_secs = 1\npoints = [\n"
        ));
        for p in 0..POINTS {
            toml.push_str(&format!(
                "  {{ code = \"{}\", sensor = \"0001\", location = \"face_t1\" }},\n",
                point(&code, p)
            ));
        }
        toml.push_str("]\n");
    }
    let path = dir.join(format!("{id}.toml"));
    std::fs::write(&path, toml).expect("config");
    path
}

struct Instance {
    id: String,
    data: PathBuf,
    process: common::DaemonProcess,
    base: String,
}

impl Instance {
    async fn start(dir: &Path, id: &str, config: PathBuf) -> Instance {
        let data = dir.join(id);
        let log = dir.join(format!("{id}-{}.log", common::now_ms()));
        let mut process = common::DaemonProcess::start(&config, &data, &log);
        let base = process.base().await;
        Instance {
            id: id.to_string(),
            data,
            process,
            base,
        }
    }

    async fn get(&self, http: &reqwest::Client, path: &str) -> Value {
        match http.get(format!("{}{path}", self.base)).send().await {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    }

    async fn cluster(&self, http: &reqwest::Client) -> Value {
        self.get(http, "/api/cluster").await
    }

    /// SIGTERM, and waits for a clean exit.
    fn terminate(&mut self) {
        let pid = self.process.child.id().to_string();
        let ok = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(ok.is_ok_and(|s| s.success()));
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.process.child.try_wait() {
                assert!(status.success(), "{}: {status}", self.id);
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{} did not stop on SIGTERM", self.id);
    }
}

/// Partitions this instance's `/api/cluster` says it holds and has warmed.
/// Every instance holds at least two partitions, and every partition is
/// held once.
async fn spread_over_all(instances: &[Instance], http: &reqwest::Client) -> bool {
    let mut n = Vec::new();
    for i in instances {
        n.push(live_here(&i.cluster(http).await).len());
    }
    n.iter().all(|&k| k >= 2) && n.iter().sum::<usize>() == usize::from(PARTITIONS)
}

fn live_here(view: &Value) -> BTreeSet<u64> {
    view["partition"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["live_here"] == json!(true))
        .filter_map(|p| p["partition"].as_u64())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_one_killed_nothing_lost_nothing_doubled() {
    let Some(_) = nats_server() else {
        eprintln!("skipped: no nats-server installed (apt-get install nats-server)");
        return;
    };
    let pg = match std::env::var("MINEWATCH_TEST_PG") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            eprintln!("skipped: MINEWATCH_TEST_PG is not set");
            return;
        }
    };
    minewatch::alert::channels::install_tls_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let (nats_port, mqtt_port) = (free_port(), free_port());
    let store = {
        let (pg, name) = (pg.clone(), common::unique("cluster"));
        tokio::task::spawn_blocking(move || minewatch::store::fresh_schema(&pg, &name))
            .await
            .expect("schema task")
            .expect("fresh schema")
    };
    let (hook_url, hooks) = common::hook::start(SECRET).await;
    let ids = ["mw-1", "mw-2", "mw-3"];
    let configs: Vec<PathBuf> = ids
        .iter()
        .map(|id| config(dir.path(), id, nats_port, &store, &hook_url))
        .collect();
    // One token for all: the users and tokens live in the shared store.
    let made = Command::new(env!("CARGO_BIN_EXE_minewatch"))
        .args(["create-token", "--config"])
        .arg(&configs[0])
        .args(["--user", "harness", "--label", "cluster"])
        .output()
        .expect("minewatch create-token");
    assert!(made.status.success(), "{made:?}");
    let http = common::client_with_token(String::from_utf8_lossy(&made.stdout).trim());

    // The first instance starts before nats-server: it says so and
    // retries. Then it takes every partition; the others join and the
    // partitions are spread 3/3/2.
    let mut instances = vec![Instance::start(dir.path(), ids[0], configs[0].clone()).await];
    common::eventually(WAIT, "mw-1 reports NATS down", || async {
        instances[0].cluster(&http).await["nats_connected"] == json!(false)
            && std::fs::read_to_string(&instances[0].process.log)
                .is_ok_and(|l| l.contains("cannot use NATS JetStream (cluster.nats_url)"))
    })
    .await;
    let _nats = start_nats(dir.path(), nats_port, mqtt_port);
    common::eventually(WAIT, "mw-1 holds every partition", || async {
        live_here(&instances[0].cluster(&http).await).len() == usize::from(PARTITIONS)
    })
    .await;
    for i in 1..3 {
        instances.push(Instance::start(dir.path(), ids[i], configs[i].clone()).await);
    }
    common::eventually(
        WAIT,
        "the partitions are spread over three instances",
        || spread_over_all(&instances, &http),
    )
    .await;

    // The mines publish over MQTT to nats-server, QoS 1.
    let mut opts = rumqttc::MqttOptions::new(common::unique("mines"), "127.0.0.1", mqtt_port);
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = rumqttc::AsyncClient::new(opts, 4096);
    let acked = Arc::new(AtomicU64::new(0));
    let pump = {
        let acked = acked.clone();
        tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => {
                        acked.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        })
    };
    let published_from = common::now_ms();
    let t0 = published_from - 3_600_000;
    let over = |k: usize| EPISODES.iter().any(|(a, b)| (*a..*b).contains(&k));
    let mut expected = BTreeSet::new();
    let mut victim: Option<(usize, BTreeSet<u64>, i64)> = None;
    for k in 0..ROUNDS {
        let started = Instant::now();
        let ts = t0 + k as i64 * 1000;
        for m in 0..MINES {
            let code = mine(m);
            let readings: Vec<Value> = (0..POINTS)
                .map(|p| {
                    expected.insert((point(&code, p), ts));
                    let v = if p == 1 && over(k) { 1.2 } else { 0.3 };
                    json!({"point": point(&code, p), "value": v, "status": 0})
                })
                .collect();
            client
                .publish(
                    format!("mines/{code}/telemetry"),
                    rumqttc::QoS::AtLeastOnce,
                    false,
                    json!({"ts": ts, "readings": readings}).to_string(),
                )
                .await
                .expect("publish");
        }
        if k == KILL_AT {
            // Kill an instance that is not the leader (the leader's
            // pushes are the subject of another line of docs/LIMITS.md).
            let mut pick = None;
            for (i, inst) in instances.iter().enumerate() {
                let v = inst.cluster(&http).await;
                if v["leader"] != json!(true) && !live_here(&v).is_empty() {
                    pick = Some((i, live_here(&v)));
                    break;
                }
            }
            let (i, parts) = pick.expect("a non-leader instance holding partitions");
            instances[i].process.kill();
            eprintln!("killed {} holding partitions {parts:?}", instances[i].id);
            victim = Some((i, parts, common::now_ms()));
        }
        tokio::time::sleep(ROUND.saturating_sub(started.elapsed())).await;
    }
    let published_until = common::now_ms();
    let (dead, dead_parts, killed_ms) = victim.expect("killed");
    let total = (ROUNDS * MINES) as u64;
    common::eventually(WAIT, "nats-server acknowledges every message", || async {
        acked.load(Ordering::SeqCst) >= total
    })
    .await;

    // The survivors took the dead instance's partitions; the first live
    // message of each reached the shards within 15 s of the kill.
    let survivors: Vec<usize> = (0..3).filter(|&i| i != dead).collect();
    let mut takeover_ms = BTreeMap::new();
    for &i in &survivors {
        let v = instances[i].cluster(&http).await;
        for p in v["partition"].as_array().into_iter().flatten() {
            let n = p["partition"].as_u64().unwrap_or(u64::MAX);
            if dead_parts.contains(&n) && p["live_here"] == json!(true) {
                let first = p["acquired_ms"].as_i64().unwrap_or(0)
                    + p["takeover_ms"].as_i64().unwrap_or(i64::MAX / 2);
                takeover_ms.insert(n, first - killed_ms);
            }
        }
    }
    eprintln!("kill to first live message, per partition taken over (ms): {takeover_ms:?}");
    assert_eq!(
        takeover_ms.keys().copied().collect::<BTreeSet<u64>>(),
        dead_parts,
        "every partition of the dead instance is held by a survivor"
    );
    assert!(
        takeover_ms.values().all(|&ms| (0..=15_000).contains(&ms)),
        "takeover within 15 s: {takeover_ms:?}"
    );

    // The dead instance restarts on its data directory (recovering its
    // journal into its archive) and rejoins: the partitions are spread
    // over three again.
    let again = Instance::start(dir.path(), ids[dead], configs[dead].clone()).await;
    let old = std::mem::replace(&mut instances[dead], again);
    drop(old);
    common::eventually(WAIT, "the restarted instance gets its share back", || {
        spread_over_all(&instances, &http)
    })
    .await;
    common::eventually(
        WAIT,
        "every partition is drained and acknowledged",
        || async {
            let mut idle = 0;
            for i in &instances {
                let v = i.cluster(&http).await;
                for p in v["partition"].as_array().into_iter().flatten() {
                    if p["live_here"] == json!(true)
                        && p["pending"] == json!(0)
                        && p["ack_pending"] == json!(0)
                    {
                        idle += 1;
                    }
                }
            }
            idle == usize::from(PARTITIONS)
        },
    )
    .await;

    // Exactly one alert per scripted episode of the dead instance's mines,
    // and every transition pushed once.
    let victims: Vec<String> = (0..MINES)
        .map(mine)
        .filter(|c| {
            dead_parts.contains(&u64::from(minewatch::cluster::partition_of(c, PARTITIONS)))
        })
        .collect();
    assert!(!victims.is_empty(), "the dead instance held mines");
    common::eventually(WAIT, "every episode cleared and pushed", || async {
        let cleared = hooks
            .items()
            .iter()
            .filter(|i| i["transition"] == json!("cleared"))
            .count();
        cleared >= MINES * EPISODES.len()
    })
    .await;
    let alerts = instances[survivors[0]]
        .get(&http, "/api/alerts?limit=1000")
        .await;
    let mut by_point: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for a in alerts["alerts"].as_array().into_iter().flatten() {
        if a["kind"] == json!("overlimit") {
            let p = a["point"].as_str().unwrap_or("").to_string();
            by_point.entry(p).or_default().push(a.clone());
        }
    }
    for code in &victims {
        let list = by_point.get(&point(code, 1)).cloned().unwrap_or_default();
        assert_eq!(
            list.len(),
            EPISODES.len(),
            "mine {code}: one alert per episode: {list:#?}"
        );
    }
    let items = hooks.items();
    let mut pushed: BTreeMap<(String, String), usize> = BTreeMap::new();
    for i in &items {
        let key = (
            i["alert_id"].as_str().unwrap_or("").to_string(),
            i["transition"].as_str().unwrap_or("").to_string(),
        );
        *pushed.entry(key).or_default() += 1;
    }
    let twice: Vec<_> = pushed.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "transitions pushed more than once: {twice:?}"
    );
    for list in by_point.values() {
        for a in list {
            let id = a["id"].as_str().unwrap_or("").to_string();
            for t in ["raised", "cleared"] {
                assert_eq!(
                    pushed.get(&(id.clone(), t.to_string())),
                    Some(&1),
                    "alert {id} {t} pushed once"
                );
            }
        }
    }
    let resent = hooks.hits().iter().filter(|h| h.duplicate).count();
    // Silence alerts while the mines were publishing (after the first
    // seconds): any is false, e.g. a new owner watching before it has
    // caught up with the backlog.
    let silent: Vec<&Value> = alerts["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["kind"] == json!("mine_offline") || a["kind"] == json!("point_offline"))
        .filter(|a| {
            a["started_at"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .is_some_and(|t| {
                    // Mines that had not reported before the publishing
                    // began are rightly offline at its start.
                    (published_from + 5_000..published_until).contains(&t.timestamp_millis())
                })
        })
        .collect();
    // CPU used by each instance (the restarted one only since its restart).
    let mut cpu = Vec::new();
    for i in &instances {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", i.process.child.id()))
            .unwrap_or_default();
        let f: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let ticks: f64 = [11, 12]
            .iter()
            .filter_map(|&k| f.get(k).and_then(|v| v.parse::<f64>().ok()))
            .sum();
        cpu.push(format!("{} {:.1} s", i.id, ticks / 100.0));
    }

    // Stop all; every acknowledged reading is in the union of the archives.
    for i in &mut instances {
        i.terminate();
    }
    pump.abort();
    let mut seen = BTreeSet::new();
    let mut rows = 0;
    for i in &instances {
        let (s, r) = archived_readings(&i.data.join("archive"));
        rows += r;
        seen.extend(s);
    }
    let missing: Vec<_> = expected.difference(&seen).take(10).collect();
    assert!(
        missing.is_empty(),
        "{} of {} readings missing from the archives, e.g. {missing:?}",
        expected.difference(&seen).count(),
        expected.len()
    );
    assert!(
        silent.is_empty(),
        "offline alerts while the mines were publishing (kill at {killed_ms}): {silent:#?}"
    );
    eprintln!(
        "CPU: {}; load: {}",
        cpu.join(", "),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    eprintln!(
        "archive: {rows} rows for {} readings ({} duplicates); webhook: {} items, {resent} resent with a key seen before",
        expected.len(),
        rows - seen.len(),
        items.len()
    );
}
