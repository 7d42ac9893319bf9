//! The `minewatch` command line: parses arguments and calls the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use minewatch::cli::replay::{ReplayArgs, Replayed, Scope};
use minewatch::cli::simulate::Output;
use minewatch::cli::{self, demo::DemoPorts, finish, init_logging};
use minewatch::simulators::ProvinceSpec;

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
        /// Broker URL (without it: mqtt://127.0.0.1:1883, which is said
        /// when publishing starts).
        #[arg(long)]
        broker: Option<String>,
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
    },
}

fn main() -> ExitCode {
    // reqwest and lettre are built with rustls but no default provider
    // (aws-lc needs cmake): install ring before any client is built.
    minewatch::alert::channels::install_tls_provider();
    let cli = Cli::parse();
    if let Command::CheckConfig { file } = &cli.command {
        return cli::check_config::check_config(file);
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
        return match cli::replay::replay(&args) {
            Ok(Replayed::Listed | Replayed::NoDifferences) => ExitCode::SUCCESS,
            Ok(Replayed::Differences) => ExitCode::from(1),
            Err(e) => {
                eprintln!("minewatch replay: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    if let Command::Audit { scope, out } = &cli.command {
        return match cli::audit::audit(scope, out) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("minewatch audit: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    if let Command::HashPassword = &cli.command {
        return cli::users::hash_password();
    }
    if let Command::CreateToken {
        config,
        user,
        label,
    } = &cli.command
    {
        return match cli::users::create_token(config, user, label) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!(
                    "minewatch: {}",
                    minewatch::redact::secrets(&format!("{e:#}"))
                );
                ExitCode::FAILURE
            }
        };
    }
    if let Command::Score {
        scenario,
        write_docs,
    } = &cli.command
    {
        return finish(cli::score::score(scenario, write_docs.as_deref()));
    }
    if let Command::Simulate {
        scenario,
        labels: Some(labels),
        readings,
        messages,
        ..
    } = &cli.command
    {
        return finish(cli::simulate::write_labelled(
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
            Command::Run { config } => cli::run::run(config, json).await,
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
                cli::demo::demo(seconds, ports, mines, points, data_dir, modbus_mines).await
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
                cli::simulate::simulate(out, spec, rate, scenario, seconds, write_config).await
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
