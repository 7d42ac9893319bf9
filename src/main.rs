//! The `minewatch` command line: parses arguments and calls the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use minewatch::config::{self, Level};
use minewatch::daemon::{Daemon, DaemonOptions};
use minewatch::simulators::modbus_server::{
    self, ModbusServer, RegisterImages, ScenarioDriver, ServedMine,
};
use minewatch::simulators::netfile_writer::NetfilePlan;
use minewatch::simulators::{self, ProvinceSpec, PublishPlan, Scenario};
use tokio::sync::watch;

#[derive(Parser)]
#[command(
    name = "minewatch",
    version,
    about = "Coal-mine safety monitoring and early warning"
)]
struct Cli {
    /// Log lines as JSON instead of text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon with a config file.
    Run {
        /// The TOML config.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a config file: every error at once, with its key and a hint.
    CheckConfig {
        /// The TOML config.
        file: PathBuf,
    },
    /// An embedded broker, a simulated province, the daemon and its page.
    Demo {
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        seconds: Option<u64>,
        /// Port of the embedded MQTT broker.
        #[arg(long, default_value_t = 1884)]
        mqtt_port: u16,
        /// Port of the HTTP API and page.
        #[arg(long, default_value_t = 8080)]
        http_port: u16,
        /// Simulated mines.
        #[arg(long, default_value_t = 20)]
        mines: usize,
        /// Points per mine.
        #[arg(long, default_value_t = 32)]
        points: usize,
        /// Where the daemon keeps its files.
        #[arg(long, default_value = "data/demo")]
        data_dir: PathBuf,
        /// Port of the simulated Modbus TCP server (0 picks a free one).
        #[arg(long, default_value_t = 5020)]
        modbus_port: u16,
        /// Port of the demo's stand-in regulator webhook receiver (0 picks a
        /// free one).
        #[arg(long, default_value_t = 8081)]
        hook_port: u16,
        /// Mines (by index) served over Modbus instead of MQTT; comma
        /// separated, empty for none.
        #[arg(long, value_delimiter = ',', default_value = "3,15")]
        modbus_mines: Vec<usize>,
    },
    /// Run the detectors over an archive in event time, at full speed, and
    /// print the alert episodes they raise (the same archive and options
    /// give the same bytes every time).
    ///
    /// With --config, points and thresholds come from that file (points it
    /// does not know are skipped and counted). Without it, every point seen
    /// in the archive is watched with the rule defaults by sensor type:
    /// methane (0001, 0011, 0043) as at a longwall face T1 — alarm 1.0 %,
    /// evacuation 1.5 %, restore below 1.0 % — and CO (0004) at 24 ppm;
    /// other sensor types raise no over-limit alerts. Offline detection uses
    /// the archived arrival times as the clock.
    ///
    /// With --compare, lists instead the differences between the replayed
    /// episodes and the live ones archived in the alerts/ stream for the
    /// same range and mine: only_replay, only_live, start, end, peak
    /// (offline kinds within one tick count as equal). Exit status: 0 no
    /// differences, 1 differences listed, 2 error.
    #[command(verbatim_doc_comment)]
    Replay {
        #[command(flatten)]
        scope: Scope,
        /// Output: table, json or csv.
        #[arg(long, default_value = "table")]
        format: String,
        /// Only these alert kinds (comma separated: overlimit, evacuation,
        /// point_offline, mine_offline, data_anomaly, falsification_suspect,
        /// suspected_illegal_production, overmanning, seal_alert).
        #[arg(long, value_delimiter = ',')]
        kind: Vec<String>,
        /// Compare with the live alerts archived in alerts/ and list the
        /// differences (exit 1 when there are any).
        #[arg(long)]
        compare: bool,
    },
    /// Audit an archive for falsified monitoring data: run the falsification
    /// and anomaly detectors in event time (as replay does) and write, into
    /// --out, report.html (self-contained: findings per mine and point ranked
    /// by strength, a chart of each suspicious window with the thresholds),
    /// findings.csv, findings.json and unreported.csv (over-limit episodes
    /// no YCBJ exception report covers, at mines that upload national
    /// files). The same archive and options write the same bytes.
    ///
    /// --from/--to/--mine/--config as for replay. Files that cannot be read
    /// are skipped, named on stderr and in the report.
    #[command(verbatim_doc_comment)]
    Audit {
        #[command(flatten)]
        scope: Scope,
        /// Where to write the report and the findings (created if needed).
        #[arg(long)]
        out: PathBuf,
    },
    /// Read a password from stdin (one line) and print its argon2 PHC hash,
    /// for `password_hash` in `[[users]]`.
    HashPassword,
    /// Create an API token for a user of the config and print it (once):
    /// `Authorization: Bearer <token>`.
    CreateToken {
        /// The TOML config (its store and users).
        #[arg(long, short)]
        config: PathBuf,
        /// The user the token acts as.
        #[arg(long)]
        user: String,
        /// What the token is for (e.g. "prometheus").
        #[arg(long, default_value = "")]
        label: String,
    },
    /// Publish simulated mine traffic to a broker.
    Simulate {
        /// Broker URL.
        #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
        broker: String,
        /// Mines.
        #[arg(long, default_value_t = 20)]
        mines: usize,
        /// Points per mine.
        #[arg(long, default_value_t = 32)]
        points: usize,
        /// Batches per mine per second.
        #[arg(long, default_value_t = 1.0)]
        rate: f64,
        /// Scenario: demo or normal (published live); with --labels, one
        /// of the labelled scoring scenarios or `all` (generated offline).
        #[arg(long, default_value = "demo")]
        scenario: String,
        /// Generate the labelled scenario offline and write its ground-truth
        /// labels (JSONL: mine, point, detector, from, to) to this file.
        #[arg(long)]
        labels: Option<PathBuf>,
        /// With --labels: also write the readings of the point scenarios
        /// (JSONL: scenario, point, ts, value, status, arrival) to this file.
        #[arg(long)]
        readings: Option<PathBuf>,
        /// With --labels: also write the messages of the power and seal
        /// scenarios (JSONL: scenario, topic, arrival, payload) to this file.
        #[arg(long)]
        messages: Option<PathBuf>,
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        seconds: Option<u64>,
        /// Polling period written into the config, seconds.
        #[arg(long, default_value_t = 5.0)]
        polling_secs: f64,
        /// Write the matching daemon config to this file and exit.
        #[arg(long)]
        write_config: Option<PathBuf>,
        /// Topic prefix.
        #[arg(long, default_value = "")]
        topic_prefix: String,
        /// Write national text files (CDDY, then CDSS each period) into
        /// this directory instead of publishing over MQTT.
        #[arg(long)]
        netfile_dir: Option<PathBuf>,
    },
    /// Score the detectors (data anomaly, falsification, electricity use,
    /// electronic seals) on the labelled scenarios: precision, recall,
    /// median time to detect, and false alerts per mine-day on normal
    /// traffic.
    Score {
        /// `all` or one scenario name.
        #[arg(long, default_value = "all")]
        scenario: String,
        /// Rewrite the table in this file between its score markers.
        #[arg(long, num_args = 0..=1, default_missing_value = "docs/DETECTORS.md")]
        write_docs: Option<PathBuf>,
        /// Score on a real background instead: a CSV whose `MM…` columns
        /// are methane values (e.g. the RuleKit "methane" longwall set),
        /// played as face methane points, as it is and with each signature
        /// injected.
        #[arg(long, conflicts_with = "write_docs")]
        real: Option<PathBuf>,
        /// The period between the real CSV's rows, seconds.
        #[arg(long, default_value_t = 30.0, requires = "real")]
        real_step_secs: f64,
    },
}

/// Logs at info by default. The embedded broker (rumqttd) logs every
/// ordinary disconnect as an error, so it is silent unless `RUST_LOG` asks.
fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,rumqttd=off,rumqttc=warn".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    // reqwest and lettre are built with rustls but no default provider
    // (aws-lc needs cmake): install ring before any client is built.
    minewatch::alert::channels::install_tls_provider();
    let cli = Cli::parse();
    if let Command::CheckConfig { file } = &cli.command {
        return check_config(file);
    }
    if let Command::Replay {
        scope,
        format,
        kind,
        compare,
    } = &cli.command
    {
        let args = ReplayArgs {
            scope,
            format,
            kinds: kind,
            compare: *compare,
        };
        return match replay(&args) {
            Ok(Replayed::Listed | Replayed::NoDifferences) => ExitCode::SUCCESS,
            Ok(Replayed::Differences) => ExitCode::from(1),
            Err(e) => {
                eprintln!("minewatch replay: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    if let Command::Audit { scope, out } = &cli.command {
        return match audit(scope, out) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("minewatch audit: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    if let Command::HashPassword = &cli.command {
        return hash_password();
    }
    if let Command::CreateToken {
        config,
        user,
        label,
    } = &cli.command
    {
        return match create_token(config, user, label) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("minewatch: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if let Command::Score {
        scenario,
        write_docs,
        real,
        real_step_secs,
    } = &cli.command
    {
        if let Some(path) = real {
            return finish(score_real(path, *real_step_secs));
        }
        return finish(score(scenario, write_docs.as_deref()));
    }
    if let Command::Simulate {
        scenario,
        labels: Some(labels),
        readings,
        messages,
        ..
    } = &cli.command
    {
        return finish(write_labelled(
            scenario,
            labels,
            readings.as_deref(),
            messages.as_deref(),
        ));
    }
    let json = cli.log_json;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("minewatch: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Run { config } => run(config, json).await,
            Command::Demo {
                seconds,
                mqtt_port,
                http_port,
                mines,
                points,
                data_dir,
                modbus_port,
                modbus_mines,
                hook_port,
            } => {
                init_logging(json);
                let ports = DemoPorts {
                    mqtt: mqtt_port,
                    http: http_port,
                    modbus: modbus_port,
                    hook: hook_port,
                };
                demo(seconds, ports, mines, points, data_dir, modbus_mines).await
            }
            Command::Simulate {
                broker,
                mines,
                points,
                rate,
                scenario,
                seconds,
                polling_secs,
                write_config,
                topic_prefix,
                netfile_dir,
                ..
            } => {
                init_logging(json);
                let spec = ProvinceSpec {
                    mines,
                    points,
                    polling_secs,
                };
                let out = match netfile_dir {
                    Some(dir) => Output::Netfile(dir),
                    None => Output::Mqtt(broker, topic_prefix),
                };
                simulate(out, spec, rate, scenario, seconds, write_config).await
            }
            Command::CheckConfig { .. }
            | Command::Replay { .. }
            | Command::Audit { .. }
            | Command::HashPassword
            | Command::CreateToken { .. }
            | Command::Score { .. } => Ok(()),
        }
    });
    finish(result)
}

fn finish(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("minewatch: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `minewatch score`: prints the table, and splices it into `docs`.
fn score(scenario: &str, docs: Option<&std::path::Path>) -> anyhow::Result<()> {
    use minewatch::simulators::score;
    let started = std::time::Instant::now();
    let report = score::score(scenario, score::standard_size)?;
    let table = score::to_markdown(&report);
    println!("{table}");
    eprintln!(
        "scored {} readings and {} messages in {:.1} s (seed {})",
        report.readings,
        report.messages,
        started.elapsed().as_secs_f64(),
        score::SEED
    );
    if report.rejected > 0 {
        eprintln!(
            "warning: the decoders refused {} simulated records",
            report.rejected
        );
    }
    if let Some(path) = docs {
        let doc = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        let stamped = format!(
            "{table}\nGenerated by `minewatch score --scenario {scenario} --write-docs` \
             (seed {}, {} readings, {} messages).\n",
            score::SEED,
            report.readings,
            report.messages
        );
        std::fs::write(path, score::splice(&doc, &stamped)?)?;
        eprintln!("wrote the table into {}", path.display());
    }
    Ok(())
}

/// `minewatch score --real FILE.csv`: the detectors on a real background.
fn score_real(path: &std::path::Path, step_secs: f64) -> anyhow::Result<()> {
    use minewatch::simulators::real;
    if !(step_secs.is_finite() && step_secs > 0.0) {
        anyhow::bail!("--real-step-secs must be a positive number of seconds");
    }
    let started = std::time::Instant::now();
    let series = real::RealSeries::load(path, (step_secs * 1000.0).round() as i64)?;
    let report = real::score_real(&series)?;
    println!("{}", real::real_markdown(&report));
    let b = minewatch::pipeline::PointStateBytes::of_build();
    println!(
        "Detector state per point: {} B (every point) + {} B (falsification, methane and CO \
         points with levels) + {} B (one-minute series, points on an air path) = {} B at most; \
         {:.0} MB for 600,000 such points.",
        b.slot,
        b.falsify,
        b.series,
        b.gas_point_on_a_path(),
        b.gas_point_on_a_path() as f64 * 600_000.0 / 1e6
    );
    eprintln!(
        "scored {} ({} readings a pass) in {:.1} s",
        path.display(),
        report.readings,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `minewatch simulate --scenario NAME --labels FILE`: the labelled
/// scenario generated offline, its labels (and readings or messages) as
/// JSONL.
fn write_labelled(
    scenario: &str,
    labels: &std::path::Path,
    readings: Option<&std::path::Path>,
    messages: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    use minewatch::simulators::activity_labelled::{self, MessageLine};
    use minewatch::simulators::labelled::{self, ReadingLine};
    use minewatch::simulators::score::{SEED, all_scenarios, standard_size};
    use std::io::Write as _;
    let names: Vec<&str> = if scenario == "all" {
        all_scenarios().collect()
    } else if let Some(n) = all_scenarios().find(|n| *n == scenario) {
        vec![n]
    } else {
        anyhow::bail!(
            "unknown scenario {scenario:?}; use all or one of {}",
            all_scenarios().collect::<Vec<_>>().join(", ")
        );
    };
    let create = |p: Option<&std::path::Path>| -> anyhow::Result<_> {
        Ok(match p {
            Some(p) => Some(std::io::BufWriter::new(std::fs::File::create(p)?)),
            None => None,
        })
    };
    let mut lf = std::io::BufWriter::new(std::fs::File::create(labels)?);
    let mut rf = create(readings)?;
    let mut mf = create(messages)?;
    let (mut n_labels, mut n_readings, mut n_messages) = (0, 0, 0);
    for name in names {
        if let Some(g) = labelled::generate(name, standard_size(name), SEED) {
            for l in &g.labels {
                serde_json::to_writer(&mut lf, l)?;
                lf.write_all(b"\n")?;
                n_labels += 1;
            }
            let Some(rf) = rf.as_mut() else { continue };
            let registry = minewatch::config::Registry::build(&g.province, 1);
            for d in &g.readings {
                let r = d.reading;
                let line = ReadingLine {
                    scenario: name,
                    point: &registry.points[r.point as usize].code,
                    ts: r.ts,
                    value: r.value.is_finite().then_some(r.value),
                    status: r.status,
                    arrival: d.arrival,
                };
                serde_json::to_writer(&mut *rf, &line)?;
                rf.write_all(b"\n")?;
                n_readings += 1;
            }
        } else if let Some(g) = activity_labelled::generate(name, standard_size(name), SEED) {
            for l in &g.labels {
                serde_json::to_writer(&mut lf, l)?;
                lf.write_all(b"\n")?;
                n_labels += 1;
            }
            let Some(mf) = mf.as_mut() else { continue };
            for m in &g.messages {
                let payload = serde_json::value::RawValue::from_string(String::from_utf8(
                    m.payload.clone(),
                )?)?;
                let line = MessageLine {
                    scenario: name,
                    topic: format!(
                        "mines/{}/{}",
                        g.province.mines[m.mine].code,
                        m.feed.topic_suffix()
                    ),
                    arrival: m.arrival,
                    payload: &payload,
                };
                serde_json::to_writer(&mut *mf, &line)?;
                mf.write_all(b"\n")?;
                n_messages += 1;
            }
        }
    }
    lf.flush()?;
    for f in [rf.as_mut(), mf.as_mut()].into_iter().flatten() {
        f.flush()?;
    }
    println!("wrote {n_labels} labels, {n_readings} readings and {n_messages} messages");
    Ok(())
}

fn check_config(file: &std::path::Path) -> ExitCode {
    match config::load(file) {
        Ok((c, warnings)) => {
            for w in &warnings {
                println!("{w}");
            }
            let points: usize = c.mines.iter().map(|m| m.points.len()).sum();
            println!(
                "{}: ok — {} mine(s), {points} point(s), {} warning(s)",
                file.display(),
                c.mines.len(),
                warnings.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprint!("{e}");
            ExitCode::from(2)
        }
    }
}

/// The arguments of `minewatch replay`.
struct ReplayArgs<'a> {
    /// `--archive`, `--from`, `--to`, `--mine`, `--config`.
    scope: &'a Scope,
    /// `--format`.
    format: &'a str,
    /// `--kind`.
    kinds: &'a [String],
    /// `--compare`.
    compare: bool,
}

/// How `minewatch replay` ended.
enum Replayed {
    /// Episodes printed.
    Listed,
    /// Compared: none.
    NoDifferences,
    /// Compared: differences printed.
    Differences,
}

fn replay(args: &ReplayArgs) -> anyhow::Result<Replayed> {
    use minewatch::archive::compare::{self, CompareOptions};
    use minewatch::archive::replay::{self, Format};
    use std::io::{IsTerminal, Write};
    let archive = args.scope.archive.as_path();
    let format = match args.format {
        "table" => Format::Table,
        "json" => Format::Json,
        "csv" => Format::Csv,
        other => anyhow::bail!("--format {other:?}: use table, json or csv"),
    };
    let kinds = args
        .kinds
        .iter()
        .map(|k| {
            minewatch::model::AlertKind::parse(k.trim()).with_context(|| {
                format!(
                    "--kind {k:?}: use overlimit, evacuation, point_offline, mine_offline, \
                     data_anomaly, falsification_suspect, suspected_illegal_production, \
                     overmanning or seal_alert"
                )
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (opts, config) = args.scope.options()?;
    let registry = match config {
        Some(c) => minewatch::config::Registry::build(&c, 1),
        None => replay::registry_from_archive(
            &replay::select_partitions(archive, opts.from, opts.to),
            opts.mine.as_deref(),
        )?,
    };
    let compare_opts = CompareOptions {
        from: opts.from,
        to: opts.to,
        mine: opts.mine.clone(),
        kinds: kinds.clone(),
        tick_ms: opts.tick_ms,
    };
    // Before the long part: an archive without alerts/ cannot be compared.
    let live = if args.compare {
        Some(compare::load_live(archive, &compare_opts)?)
    } else {
        None
    };
    let started = std::time::Instant::now();
    let tty = std::io::stderr().is_terminal();
    let mut result = replay::replay(&opts, registry, |p| {
        if tty {
            let width = 30;
            let filled = (p.hours_done * width).checked_div(p.hours).unwrap_or(width);
            eprint!(
                "\r[{}{}] {}/{} hours, {} readings",
                "#".repeat(filled),
                " ".repeat(width - filled),
                p.hours_done,
                p.hours,
                p.readings
            );
        }
    })?;
    if tty {
        eprintln!();
    }
    if !kinds.is_empty() {
        result.episodes.retain(|e| kinds.contains(&e.kind));
    }
    let secs = started.elapsed().as_secs_f64();
    if tty {
        eprintln!(
            "{} readings from {} files in {secs:.2} s ({:.1} M readings/s); {} alert episodes",
            result.readings,
            result.files,
            result.readings as f64 / secs.max(1e-9) / 1e6,
            result.episodes.len(),
        );
    }
    if result.unknown_points > 0 {
        eprintln!(
            "minewatch replay: {} readings of points not in the config were skipped",
            result.unknown_points
        );
    }
    let mut out = std::io::stdout().lock();
    let Some(live) = live else {
        out.write_all(replay::render(&result.episodes, format).as_bytes())?;
        out.flush()?;
        return Ok(Replayed::Listed);
    };
    if live.unknown_kinds > 0 {
        eprintln!(
            "minewatch replay: {} live alerts of kinds this minewatch does not know were skipped",
            live.unknown_kinds
        );
    }
    let diffs = compare::compare(&result.episodes, &live.episodes, &compare_opts);
    out.write_all(compare::render(&diffs, format).as_bytes())?;
    out.flush()?;
    eprintln!(
        "minewatch replay --compare: {}",
        compare::summary(result.episodes.len(), live.episodes.len(), &diffs)
    );
    Ok(if diffs.is_empty() {
        Replayed::NoDifferences
    } else {
        Replayed::Differences
    })
}

/// The part of an archive that `replay` and `audit` read.
#[derive(clap::Args, Debug)]
struct Scope {
    /// The archive root (the folder holding readings/), e.g. data/archive.
    #[arg(long)]
    archive: PathBuf,
    /// First event time read: RFC 3339 (2026-11-23T16:00:00Z), a UTC date
    /// (2026-11-23) or epoch milliseconds.
    #[arg(long)]
    from: Option<String>,
    /// First event time not read (same spellings as --from).
    #[arg(long)]
    to: Option<String>,
    /// Only this mine (12-digit code).
    #[arg(long)]
    mine: Option<String>,
    /// Points, thresholds, detector knobs and tick period from this config
    /// (else the points the archive names, with the default rules).
    #[arg(long)]
    config: Option<PathBuf>,
}

impl Scope {
    /// Checks the archive root and the times; the replay options for this
    /// scope, and the config when one is named (its tick period is in the
    /// options).
    fn options(
        &self,
    ) -> anyhow::Result<(
        minewatch::archive::replay::ReplayOptions,
        Option<minewatch::config::Config>,
    )> {
        use minewatch::archive::replay::{ReplayOptions, parse_time};
        let archive = self.archive.as_path();
        if !archive.is_dir() {
            anyhow::bail!(
                "{} is not a folder; point --archive at the archive root (default data/archive)",
                archive.display()
            );
        }
        if !archive.join(minewatch::archive::READINGS).is_dir() {
            anyhow::bail!(
                "{} has no readings/ folder; point --archive at the archive root (default data/archive)",
                archive.display()
            );
        }
        let time = |flag: &str, t: &Option<String>| -> anyhow::Result<Option<i64>> {
            t.as_deref()
                .map(|t| {
                    parse_time(t).with_context(|| {
                        format!("{flag} {t:?}: use RFC 3339 (2026-11-23T16:00:00Z), a date (2026-11-23) or epoch ms")
                    })
                })
                .transpose()
        };
        let mut opts = ReplayOptions::new(archive);
        opts.from = time("--from", &self.from)?;
        opts.to = time("--to", &self.to)?;
        opts.mine = self.mine.clone();
        let config = match &self.config {
            Some(path) => {
                let (c, _) = config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
                opts.tick_ms = c.daemon.tick_ms.max(1) as i64;
                Some(c)
            }
            None => None,
        };
        Ok((opts, config))
    }
}

fn audit(scope: &Scope, out: &std::path::Path) -> anyhow::Result<()> {
    use minewatch::archive::audit::{self, AuditOptions};
    use minewatch::archive::replay;
    let archive = scope.archive.as_path();
    let config_file = scope.config.as_deref();
    let (mut opts, config) = scope.options()?;
    opts.skip_unreadable = true;
    let mut skipped = Vec::new();
    let registry = match config {
        Some(c) => minewatch::config::Registry::build(&c, 1),
        None => replay::registry_from_archive_skipping(
            &replay::select_partitions(archive, opts.from, opts.to),
            opts.mine.as_deref(),
            &mut skipped,
        )?,
    };
    if let Some(code) = &opts.mine
        && registry.mine(code).is_none()
    {
        anyhow::bail!(
            "mine {code} has no readings in the archive{}",
            if config_file.is_some() {
                " or is not in the config"
            } else {
                ""
            }
        );
    }
    let started = std::time::Instant::now();
    let result = audit::run(
        &AuditOptions {
            replay: opts,
            config: config_file.map(|p| p.display().to_string()),
        },
        registry,
        skipped,
    )?;
    for s in &result.skipped {
        eprintln!("minewatch audit: skipped {} ({})", s.path, s.error);
    }
    let written = audit::write_outputs(&result, out)?;
    let unreported = result.unreported().count();
    println!(
        "audited {} readings from {} files in {:.1} s: {} findings at {} points, {} over-limit episodes ({unreported} never reported in YCBJ), {} files skipped",
        result.readings,
        result.files,
        started.elapsed().as_secs_f64(),
        result.findings.len(),
        result
            .findings
            .iter()
            .map(|f| (&f.mine, &f.point))
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        result.episodes.len(),
        result.skipped.len(),
    );
    for p in written {
        println!("wrote {}", p.display());
    }
    Ok(())
}

fn hash_password() -> ExitCode {
    let mut line = String::new();
    if let Err(e) = std::io::stdin().read_line(&mut line) {
        eprintln!("minewatch: cannot read the password from stdin: {e}");
        return ExitCode::FAILURE;
    }
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        eprintln!(
            "minewatch: empty password; write it on stdin, e.g. `minewatch hash-password < pw.txt`"
        );
        return ExitCode::from(2);
    }
    match minewatch::auth::hash_password(password) {
        Ok(h) => {
            println!("{h}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("minewatch: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn create_token(path: &std::path::Path, user: &str, label: &str) -> anyhow::Result<()> {
    let (config, _) = config::load(path)?;
    let url = config.alerting.store_url(&config.daemon.data_dir);
    let store = minewatch::store::Store::open(&url)
        .with_context(|| format!("cannot open the store {url} (alerting.store)"))?;
    let now = chrono::Utc::now().timestamp_millis();
    minewatch::auth::sessions::sync_config_users(&store, &config.users, now)?;
    let (id, token) =
        store.tx(|db| minewatch::auth::sessions::create_token(db, user, label, "cli", now))?;
    eprintln!(
        "token {id} for {user}: send it as `Authorization: Bearer <token>`; it is shown once"
    );
    println!("{token}");
    Ok(())
}

/// Resolves on Ctrl-C, on SIGTERM (how service managers stop daemons) or
/// after `seconds`.
async fn until_stopped(seconds: Option<u64>) {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    let timer = async {
        match seconds {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = timer => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

async fn run(path: PathBuf, json: bool) -> anyhow::Result<()> {
    let (config, warnings) = config::load(&path)?;
    init_logging(json || config.daemon.log_format == "json");
    for w in warnings.iter().filter(|w| w.level == Level::Warning) {
        tracing::warn!("{}", w.to_string().replace('\n', " "));
    }
    let daemon = Daemon::start(config, DaemonOptions::default()).await?;
    tracing::info!(http = %daemon.http_addr, "minewatch running");
    until_stopped(None).await;
    tracing::info!("stopping");
    daemon.shutdown().await;
    Ok(())
}

/// Ports the demo listens on.
struct DemoPorts {
    mqtt: u16,
    http: u16,
    modbus: u16,
    hook: u16,
}

/// The password of every demo user (printed in the banner).
const DEMO_PASSWORD: &str = "minewatch-demo";

/// The demo's users: the province desk, an auditor, an admin, and for each
/// county its regulator (`county-{code}`) and its duty inspector
/// (`duty-{code}`, the roster's inspector), all with [`DEMO_PASSWORD`]
/// (hashed with cheap argon2 parameters so that start-up stays quick).
fn demo_users(
    config: &minewatch::config::Config,
) -> anyhow::Result<Vec<minewatch::config::auth::UserConfig>> {
    use minewatch::config::auth::UserConfig;
    let counties: std::collections::BTreeSet<&str> =
        config.mines.iter().map(|m| m.county.as_str()).collect();
    let user = |name: String, role: &str, j: Option<&str>| -> anyhow::Result<UserConfig> {
        Ok(UserConfig {
            name,
            role: role.into(),
            jurisdiction: j.map(str::to_string),
            password_hash: Some(minewatch::auth::hash_password_cheap(DEMO_PASSWORD)?),
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
fn demo_activity() -> minewatch::config::activity::ActivityConfig {
    minewatch::config::activity::ActivityConfig {
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
    config: &minewatch::config::Config,
    receiver: &simulators::webhook_receiver::WebhookReceiver,
) -> anyhow::Result<minewatch::config::alerting::AlertingConfig> {
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

async fn demo(
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
    let broker = minewatch::broker::start_embedded(ports.mqtt)?;
    let spec = ProvinceSpec {
        mines,
        points,
        polling_secs: 5.0,
    };
    let province = simulators::with_feeds(simulators::province(spec));
    let mut config = province.clone();
    config.mqtt.broker = format!("mqtt://{broker}");
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
    // The demo's time is compressed (a 3-minute cycle): a point that
    // re-crosses within 20 s stays one alert, and an episode that ended
    // resolves 20 s later rather than ten minutes.
    config.rules.regroup_secs = 20;
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
                minewatch::auth::sessions::create_token(db, "admin", "demo banner", "demo", now)
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
    let broker_url = format!("mqtt://{broker}");
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
         \n  alerts (MQTT) mosquitto_sub -p {} -t 'alerts/#'{modbus_line}{files_line}\
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

/// Where `simulate` sends its traffic.
enum Output {
    /// An MQTT broker URL and topic prefix.
    Mqtt(String, String),
    /// A drop directory for national text files.
    Netfile(PathBuf),
}

async fn simulate(
    out: Output,
    spec: ProvinceSpec,
    rate: f64,
    scenario: String,
    seconds: Option<u64>,
    write_config: Option<PathBuf>,
) -> anyhow::Result<()> {
    let scenario = Scenario::parse(&scenario).ok_or_else(|| {
        anyhow::anyhow!(
            "unknown scenario {scenario:?}; use demo or normal (the labelled scoring \
                 scenarios are generated offline: add --labels FILE.jsonl)"
        )
    })?;
    anyhow::ensure!(
        rate.is_finite() && rate > 0.0 && rate <= 1000.0,
        "--rate {rate}: use a rate in (0, 1000] batches per mine per second"
    );
    let province = simulators::with_feeds(simulators::province(spec));
    if let Some(path) = write_config {
        let source = match &out {
            Output::Mqtt(broker, _) => format!("[mqtt]\nbroker = \"{broker}\"\n"),
            Output::Netfile(dir) => format!("[netfile]\ndir = {:?}\n", dir.display().to_string()),
        };
        let header = format!(
            "# Generated by `minewatch simulate --mines {} --points {} --polling-secs {} \
             --write-config`.\n\n{source}",
            spec.mines, spec.points, spec.polling_secs
        );
        std::fs::write(&path, simulators::to_toml(&province, &header))?;
        println!("wrote {}", path.display());
        return Ok(());
    }
    let (stop, stop_rx) = watch::channel(false);
    let duration = seconds.map(Duration::from_secs);
    let task = match out {
        Output::Mqtt(broker, topic_prefix) => {
            let plan = PublishPlan {
                province,
                scenario,
                rate_hz: rate,
                duration,
                topic_prefix,
                seed: 2026,
                skip_mines: Vec::new(),
            };
            tokio::spawn(async move { simulators::publish::run(&broker, plan, stop_rx).await })
        }
        Output::Netfile(dir) => {
            let plan = NetfilePlan {
                mines: (0..province.mines.len()).collect(),
                province,
                scenario,
                period: Duration::from_secs_f64(1.0 / rate),
                duration,
                seed: 2026,
            };
            tokio::spawn(async move { simulators::netfile_writer::run(dir, plan, stop_rx).await })
        }
    };
    let ctrl_c = Arc::new(stop);
    let c = ctrl_c.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        let _ = c.send(true);
    });
    let published = task.await??;
    println!(
        "published {} messages, {} readings",
        published.messages, published.readings
    );
    Ok(())
}
