//! `minewatch replay`: the detectors over an archive in event time, and
//! `--compare` against the live alerts archived beside it; also the
//! archive scope (`--archive`, `--from`, `--to`, `--mine`, `--config`)
//! that `replay` and `audit` share.

use std::path::PathBuf;

use anyhow::Context;

use crate::config;

/// The arguments of `minewatch replay`.
pub struct ReplayArgs<'a> {
    /// `--archive`, `--from`, `--to`, `--mine`, `--config`.
    pub scope: &'a Scope,
    /// `--format`.
    pub format: &'a str,
    /// `--kind`.
    pub kinds: &'a [String],
    /// `--compare`.
    pub compare: bool,
}

/// How `minewatch replay` ended.
pub enum Replayed {
    /// Episodes printed.
    Listed,
    /// Compared: none.
    NoDifferences,
    /// Compared: differences printed.
    Differences,
}

/// `minewatch replay`: prints the episodes, or with `--compare` the
/// differences from the live alerts.
pub fn replay(args: &ReplayArgs) -> anyhow::Result<Replayed> {
    use crate::review::compare::{self, CompareOptions};
    use crate::review::replay::{self, Format};
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
            crate::model::AlertKind::parse(k.trim()).with_context(|| {
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
        Some(c) => crate::config::Registry::build(&c, 1),
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
pub struct Scope {
    /// The archive root (the folder holding readings/), e.g. data/archive.
    #[arg(long)]
    pub archive: PathBuf,
    /// First event time read: RFC 3339 (2026-11-23T16:00:00Z), a UTC date
    /// (2026-11-23) or epoch milliseconds.
    #[arg(long)]
    pub from: Option<String>,
    /// First event time not read (same spellings as --from).
    #[arg(long)]
    pub to: Option<String>,
    /// Only this mine (12-digit code).
    #[arg(long)]
    pub mine: Option<String>,
    /// Points, thresholds, detector knobs and tick period from this config
    /// (else the points the archive names, with the default rules).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

impl Scope {
    /// Checks the archive root and the times; the replay options for this
    /// scope, and the config when one is named (its tick period is in the
    /// options).
    pub fn options(
        &self,
    ) -> anyhow::Result<(
        crate::review::replay::ReplayOptions,
        Option<crate::config::Config>,
    )> {
        use crate::review::replay::{ReplayOptions, parse_time};
        let archive = self.archive.as_path();
        if !archive.is_dir() {
            anyhow::bail!(
                "{} is not a folder; point --archive at the archive root (default data/archive)",
                archive.display()
            );
        }
        if !archive.join(crate::archive::READINGS).is_dir() {
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
