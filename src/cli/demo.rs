//! `minewatch demo`: an embedded broker, a simulated province (MQTT,
//! Modbus and national files), the daemon, its page and a stand-in for the
//! regulators' push receivers, wired together.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;

use crate::broker::acl::BrokerUser;
use crate::config::{self, Level};
use crate::daemon::{Daemon, DaemonOptions};
use crate::simulators::modbus_server::{
    self, ModbusServer, RegisterImages, ScenarioDriver, ServedMine,
};
use crate::simulators::netfile_writer::NetfilePlan;
use crate::simulators::{self, ProvinceSpec, PublishPlan, Scenario};

use super::until_stopped;

/// What a data directory that minewatch wrote holds (any one of them).
const DATA_DIR_MARKS: [&str; 5] = [
    "minewatch.db",
    "archive",
    "replay.toml",
    "drop",
    "netfile-ledger.jsonl",
];

/// Makes `dir` a fresh data directory for this demo, so that its archive,
/// `replay --compare` and `audit` tell one run's story: an earlier run's
/// directory is moved to `{dir}.previous` (replacing the one there) and
/// that place is returned. A directory holding anything else is refused,
/// so that a mistyped `--data-dir` cannot move someone's files.
fn fresh_data_dir(dir: &std::path::Path) -> anyhow::Result<Option<PathBuf>> {
    let names: Vec<std::ffi::OsString> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => anyhow::bail!("--data-dir {}: cannot read it: {e}", dir.display()),
    };
    if names.is_empty() {
        return Ok(None);
    }
    anyhow::ensure!(
        names.iter().any(|n| DATA_DIR_MARKS.iter().any(|m| n == m)),
        "--data-dir {}: it holds files that are not an earlier demo's; name a new or empty \
         directory",
        dir.display()
    );
    let name = dir
        .file_name()
        .with_context(|| format!("--data-dir {}: name a directory", dir.display()))?;
    let mut previous_name = name.to_os_string();
    previous_name.push(".previous");
    let previous = dir.with_file_name(previous_name);
    if previous.exists() {
        std::fs::remove_dir_all(&previous)
            .with_context(|| format!("cannot remove the older {}", previous.display()))?;
    }
    std::fs::rename(dir, &previous).with_context(|| {
        format!(
            "cannot move the earlier demo's {} to {}",
            dir.display(),
            previous.display()
        )
    })?;
    Ok(Some(previous))
}

/// Ports the demo listens on.
pub struct DemoPorts {
    /// The embedded MQTT broker.
    pub mqtt: u16,
    /// The HTTP API and page.
    pub http: u16,
    /// The simulated Modbus TCP server (0 picks a free one).
    pub modbus: u16,
    /// The stand-in regulators' webhook receiver (0 picks a free one).
    pub hook: u16,
}

/// The password of every demo user (printed in the banner).
const DEMO_PASSWORD: &str = "minewatch-demo";

/// The demo's users: the province desk, an auditor, an admin, and for each
/// county its regulator (`county-{code}`) and its duty inspector
/// (`duty-{code}`, the roster's inspector), all with [`DEMO_PASSWORD`]
/// (hashed with cheap argon2 parameters so that start-up stays quick).
fn demo_users(
    config: &crate::config::Config,
) -> anyhow::Result<Vec<crate::config::auth::UserConfig>> {
    use crate::config::auth::UserConfig;
    let counties: std::collections::BTreeSet<&str> =
        config.mines.iter().map(|m| m.county.as_str()).collect();
    let user = |name: String, role: &str, j: Option<&str>| -> anyhow::Result<UserConfig> {
        Ok(UserConfig {
            name,
            role: role.into(),
            jurisdiction: j.map(str::to_string),
            password_hash: Some(crate::auth::hash_password_cheap(DEMO_PASSWORD)?),
        })
    };
    let mut users = vec![
        user("desk".into(), "province_desk", None)?,
        user("auditor".into(), "auditor", None)?,
        user("admin".into(), "admin", None)?,
    ];
    for c in counties {
        users.push(user(format!("county-{c}"), "county_regulator", Some(c))?);
        users.push(user(format!("duty-{c}"), "inspector", Some(c))?);
    }
    Ok(users)
}

/// The secret the demo's webhooks are signed with.
const DEMO_HOOK_SECRET: &str = "minewatch-demo";

/// `[activity]` for the demo: the same rules on windows short enough to show
/// within one 3-minute cycle (a real deployment keeps the defaults).
fn demo_activity() -> crate::config::activity::ActivityConfig {
    crate::config::activity::ActivityConfig {
        baseline_window_mins: 2,
        production_window_mins: 3,
        production_minutes: 1,
        people_hold_secs: 20,
        hoist_running_secs: 30,
        fault_hold_secs: 10,
        static_image_secs: 30,
        static_image_frames: 2,
        vehicle_window_secs: 600,
        ..Default::default()
    }
}

/// `[alerting]` for the demo: every county's desk hears of its own mines'
/// evacuations, over-limits, mine outages, suspected illegal production and
/// overmanning at once, every city's desk of suspected illegal production
/// at once and of what its counties leave unacknowledged; a duty inspector
/// per county
/// round the clock; evacuations escalate after 60 s so that the demo shows
/// it.
fn demo_alerting(
    config: &crate::config::Config,
    receiver: &simulators::webhook_receiver::WebhookReceiver,
) -> anyhow::Result<crate::config::alerting::AlertingConfig> {
    use std::collections::BTreeSet;
    use std::fmt::Write;
    let counties: BTreeSet<&str> = config.mines.iter().map(|m| m.county.as_str()).collect();
    let cities: BTreeSet<&str> = config.mines.iter().map(|m| m.city.as_str()).collect();
    let mut t = format!(
        r#"renotify_secs = {{ critical = 30, major = 300, minor = 0 }}
escalate_after_secs = {{ critical = 60, major = 600, minor = 0 }}
jurisdictions = {{ "140000" = "山西省", "140100" = "太原市", "140121" = "清徐县", "140181" = "古交市", "140400" = "长治市", "140429" = "武乡县", "140481" = "潞城市", "140500" = "晋城市", "140521" = "沁水县" }}

[[channels]]
name = "county-desks"
kind = "webhook"
url = "{county}"
secret = "{DEMO_HOOK_SECRET}"

[[channels]]
name = "city-desks"
kind = "webhook"
url = "{city}"
secret = "{DEMO_HOOK_SECRET}"
"#,
        county = receiver.url("county"),
        city = receiver.url("city"),
    );
    for c in &counties {
        writeln!(
            t,
            "\n[[routes]]\njurisdiction = \"{c}\"\nkinds = [\"evacuation\", \"overlimit\", \"mine_offline\", \"suspected_illegal_production\", \"overmanning\"]\nchannels = [\"county-desks\"]\n\n[[roster]]\ncounty = \"{c}\"\ninspector = \"duty-{c}\"\nname = \"{c} 值班员\""
        )?;
    }
    for c in &cities {
        writeln!(
            t,
            "\n[[routes]]\njurisdiction = \"{c}\"\nchannels = [\"city-desks\"]\n\n[[routes]]\njurisdiction = \"{c}\"\nkinds = [\"suspected_illegal_production\"]\nwhen = \"at_once\"\nchannels = [\"city-desks\"]"
        )?;
    }
    Ok(toml::from_str(&t)?)
}

/// `minewatch demo`: runs until Ctrl-C, SIGTERM or `seconds`.
pub async fn demo(
    seconds: Option<u64>,
    ports: DemoPorts,
    mines: usize,
    points: usize,
    data_dir: PathBuf,
    mut modbus_mines: Vec<usize>,
) -> anyhow::Result<()> {
    modbus_mines.sort_unstable();
    modbus_mines.dedup();
    if let Some(&m) = modbus_mines.iter().find(|&&m| m >= mines) {
        anyhow::bail!("--modbus-mines {m}: there are only {mines} mines (indices 0..{mines})");
    }
    anyhow::ensure!(
        modbus_mines.len() <= 247,
        "--modbus-mines: at most 247 mines fit on one Modbus server (unit ids 1..=247)"
    );
    if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", ports.http)) {
        anyhow::bail!(
            "cannot serve the page on 127.0.0.1:{} ({e}); pick another port with --http-port \
             (0 picks a free one)",
            ports.http
        );
    }
    let previous = fresh_data_dir(&data_dir)?;
    let spec = ProvinceSpec {
        mines,
        points,
        polling_secs: 5.0,
    };
    let province = simulators::with_feeds(simulators::province(spec));
    // The embedded broker admits three users, each with a password made
    // now: the daemon (everything), the simulator (publishes only under
    // its mines' topics) and a reader of alerts/# for the banner.
    let secret = || format!("{:032x}", rand::random::<u128>());
    let (daemon_pw, sim_pw, alerts_pw) = (secret(), secret(), secret());
    let simulated: Vec<&str> = province.mines.iter().map(|m| m.code.as_str()).collect();
    let broker = crate::broker::start_secured(
        ports.mqtt,
        vec![
            BrokerUser::daemon("minewatch", &daemon_pw),
            BrokerUser::mine("simulator", &sim_pw, "", &simulated),
            BrokerUser {
                name: "alerts".into(),
                password: alerts_pw.clone(),
                publish: Vec::new(),
                subscribe: vec!["alerts/#".into()],
            },
        ],
    )?;
    let mut config = province.clone();
    config.mqtt.broker = format!("mqtt://minewatch:{daemon_pw}@{broker}");
    config.mqtt.client_id = format!("minewatch-demo-{}", std::process::id());
    config.http.listen = format!("127.0.0.1:{}", ports.http);
    config.daemon.data_dir = data_dir.clone();
    let receiver = simulators::webhook_receiver::WebhookReceiver::start(
        std::net::SocketAddr::from(([127, 0, 0, 1], ports.hook)),
        DEMO_HOOK_SECRET,
    )
    .await
    .with_context(|| {
        format!(
            "cannot start the demo webhook receiver on port {}; pick another with --hook-port",
            ports.hook
        )
    })?;
    config.alerting = demo_alerting(&config, &receiver)?;
    config.activity = demo_activity();
    config.users = demo_users(&config)?;

    // One mine arrives as national text files: its points come from its
    // CDDY file, not from the config.
    let netfile_mine = (0..mines)
        .rev()
        .find(|m| *m <= 7 && !modbus_mines.contains(m));
    if let Some(m) = netfile_mine {
        config.mines[m].points.clear();
    }
    let drop_dir = data_dir.join("drop");
    config.netfile.dir = Some(drop_dir.clone());
    config.netfile.scan_ms = 500;

    // The Modbus mines: one simulated server, one unit id per mine.
    let images = RegisterImages::new();
    let mut modbus = None;
    let mut served = Vec::new();
    if !modbus_mines.is_empty() {
        let listen = std::net::SocketAddr::from(([127, 0, 0, 1], ports.modbus));
        let server = ModbusServer::start(listen, images.clone())
            .await
            .with_context(|| {
                format!(
                    "cannot serve Modbus on {listen}; pick another port with --modbus-port \
                     (0 picks a free one)"
                )
            })?;
        for (k, &m) in modbus_mines.iter().enumerate() {
            let mine = &config.mines[m];
            let device = modbus_server::device_config(
                mine,
                &format!("sim-{}", mine.code),
                &server.addr.to_string(),
                k as u8 + 1,
                1000,
            );
            served.push(ServedMine {
                mine: m,
                unit: k as u8 + 1,
                device: device.clone(),
            });
            config.modbus.devices.push(device);
        }
        modbus = Some(server);
    }
    let errors: Vec<String> = config::validate(&config)
        .into_iter()
        .filter(|i| i.level == Level::Error)
        .map(|i| i.to_string())
        .collect();
    anyhow::ensure!(errors.is_empty(), "demo config: {}", errors.join("; "));
    // Registers hold values before the first poll.
    let mut driver = ScenarioDriver::new(&config, served, Scenario::Demo, 2026, images);
    driver.step(0.0);
    let daemon = Daemon::start(config.clone(), DaemonOptions::default()).await?;
    let token = {
        let store = daemon.lifecycle.store.clone();
        let now = chrono::Utc::now().timestamp_millis();
        tokio::task::spawn_blocking(move || {
            store.tx(|db| {
                crate::auth::sessions::create_token(db, "admin", "demo banner", "demo", now)
            })
        })
        .await??
        .1
    };
    let (stop, stop_rx) = watch::channel(false);
    let driver = tokio::spawn(driver.run(Duration::from_secs(1), stop_rx.clone()));
    let files = NetfilePlan {
        province: province.clone(),
        mines: netfile_mine.into_iter().collect(),
        scenario: Scenario::Demo,
        period: Duration::from_secs(5),
        duration: None,
        seed: 2026,
    };
    let (files_stop, file_dir) = (stop_rx.clone(), drop_dir.clone());
    let file_sim =
        tokio::spawn(
            async move { simulators::netfile_writer::run(file_dir, files, files_stop).await },
        );
    // Every mine and point of the demo, with the thresholds the rules give
    // their locations, for replaying its archive against its live alerts.
    let replay_config = data_dir.join("replay.toml");
    let header = format!(
        "# The demo's mines and points, for\n# minewatch replay --archive {} --config {} --compare\n\n[daemon]\ntick_ms = {}\n\n[activity]\n{}\n",
        data_dir.join("archive").display(),
        replay_config.display(),
        config.daemon.tick_ms,
        toml::to_string(&config.activity).context("writing the demo's [activity] knobs")?
    );
    std::fs::write(&replay_config, simulators::to_toml(&province, &header))
        .with_context(|| format!("cannot write {}", replay_config.display()))?;
    let mut skip_mines = modbus_mines.clone();
    skip_mines.extend(netfile_mine);
    let plan = PublishPlan {
        province,
        scenario: Scenario::Demo,
        rate_hz: 1.0,
        duration: None,
        topic_prefix: String::new(),
        seed: 2026,
        skip_mines,
    };
    let broker_url = format!("mqtt://simulator:{sim_pw}@{broker}");
    let sim =
        tokio::spawn(async move { simulators::publish::run(&broker_url, plan, stop_rx).await });
    let http = daemon.http_addr;
    let modbus_line = match &modbus {
        Some(server) => {
            let listed: Vec<String> = modbus_mines
                .iter()
                .enumerate()
                .map(|(k, &m)| format!("{} as unit {}", config.mines[m].code, k + 1))
                .collect();
            format!(
                "\n  modbus        tcp://{} serves mine(s) {}",
                server.addr,
                listed.join(", ")
            )
        }
        None => String::new(),
    };
    let files_line = match netfile_mine {
        Some(m) => format!(
            "\n  files         mine {} uploads national text files into {}",
            config.mines[m].code,
            drop_dir.display()
        ),
        None => String::new(),
    };
    let example_county = config.mines.first().map_or("140121", |m| m.county.as_str());
    println!(
        "\nminewatch demo: {mines} simulated mines × {points} points on the embedded broker mqtt://{broker}\n\
         \n  page          http://{http}/  — sign in as desk, county-{example_county}, \
         duty-{example_county}, auditor or admin; password {DEMO_PASSWORD}\
         \n  API token     export MW_TOKEN={token}   (admin; curl -H \"Authorization: Bearer $MW_TOKEN\" …)\
         \n  alerts        curl -H \"Authorization: Bearer $MW_TOKEN\" http://{http}/api/alerts\
         \n  live feed     curl -N -H \"Authorization: Bearer $MW_TOKEN\" http://{http}/api/alerts/stream\
         \n  rejects       curl -H \"Authorization: Bearer $MW_TOKEN\" http://{http}/api/rejects\
         \n  metrics       curl -H \"Authorization: Bearer $MW_TOKEN\" http://{http}/metrics\
         \n  alerts (MQTT) mosquitto_sub -p {} -u alerts -P {alerts_pw} -t 'alerts/#'{modbus_line}{files_line}\
         \n  webhooks      county and city desks receive signed pushes at http://{hook}/received\
         \n  duty tasks    curl -H \"Authorization: Bearer $MW_TOKEN\" http://{http}/api/tasks\
         \n  (the other mines publish over MQTT)\
         \n\nWithin 60 s: a methane over-limit that escalates to evacuation and resolves, a CO\n\
         over-limit, a point going offline and a whole mine going offline; within 3 minutes a\n\
         stopped mine at work (power and seals: suspected illegal production), more people\n\
         underground than approved (overmanning), an obstructed camera, a still picture and an\n\
         empty dispatch desk (seal alerts) and a silent power meter; the script repeats every\n\
         3 minutes on other mines. Ctrl-C stops.\n",
        broker.port(),
        hook = receiver.addr,
    );
    println!(
        "Handle an alert (ids from /api/alerts and /api/tasks):\n\
         \n  curl -XPOST http://{http}/api/tasks/TASK_ID/ack -H \"Authorization: Bearer $MW_TOKEN\" -H 'content-type: application/json' -d '{{\"by\":\"duty-140481\"}}'\
         \n  curl -XPOST http://{http}/api/tasks/TASK_ID/close -H \"Authorization: Bearer $MW_TOKEN\" -H 'content-type: application/json' \\\
         \n       -d '{{\"by\":\"duty-140481\",\"contacted\":\"电话联系调度室\",\"cause\":\"…\",\"measures\":\"…\",\"result\":\"…\"}}'\n"
    );
    if let Some(previous) = &previous {
        println!(
            "This demo starts on a fresh {}; the files of the one before are in {}.\n",
            data_dir.display(),
            previous.display()
        );
    }
    println!(
        "After the demo, replay its archive against its live alerts:\n\n  minewatch replay --archive {} --config {} --compare\n",
        data_dir.join("archive").display(),
        replay_config.display()
    );
    until_stopped(seconds).await;
    let _ = stop.send(true);
    match sim.await {
        Ok(Ok(p)) => tracing::info!(
            messages = p.messages,
            readings = p.readings,
            "simulator stopped"
        ),
        Ok(Err(e)) => tracing::error!(error = %e, "simulator failed"),
        Err(e) => tracing::error!(error = %e, "simulator task failed"),
    }
    if let Ok(Err(e)) = file_sim.await {
        tracing::error!(error = %e, "national-file writer failed");
    }
    let _ = driver.await;
    daemon.shutdown().await;
    if let Some(server) = modbus {
        server.stop().await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_earlier_demo_is_moved_aside_and_anything_else_is_refused() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("demo");
        // None yet, or empty: nothing to move.
        assert_eq!(fresh_data_dir(&dir).expect("absent"), None);
        std::fs::create_dir(&dir).expect("mkdir");
        assert_eq!(fresh_data_dir(&dir).expect("empty"), None);
        // An earlier demo's files.
        std::fs::create_dir(dir.join("archive")).expect("mkdir");
        std::fs::write(dir.join("minewatch.db"), b"first").expect("write");
        let previous = fresh_data_dir(&dir).expect("moved").expect("a place");
        assert_eq!(previous, root.path().join("demo.previous"));
        assert!(!dir.exists());
        assert_eq!(
            std::fs::read(previous.join("minewatch.db")).expect("kept"),
            b"first"
        );
        // The next run replaces the older copy.
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::write(dir.join("minewatch.db"), b"second").expect("write");
        fresh_data_dir(&dir).expect("moved again");
        assert_eq!(
            std::fs::read(previous.join("minewatch.db")).expect("kept"),
            b"second"
        );
        // Someone else's files are never moved.
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::write(dir.join("thesis.tex"), b"mine").expect("write");
        let err = fresh_data_dir(&dir).expect_err("refused");
        assert!(err.to_string().contains("not an earlier demo's"), "{err}");
        assert!(dir.join("thesis.tex").exists());
    }
}
