//! `minewatch audit`: the falsification and anomaly findings of an
//! archive, ranked, with a self-contained HTML report.

use super::replay::Scope;

/// `minewatch audit`: writes the report and the findings into `out`.
pub fn audit(scope: &Scope, out: &std::path::Path) -> anyhow::Result<()> {
    use crate::review::audit::{self, AuditOptions};
    use crate::review::replay;
    let archive = scope.archive.as_path();
    let config_file = scope.config.as_deref();
    let (mut opts, config) = scope.options()?;
    opts.skip_unreadable = true;
    let mut skipped = Vec::new();
    let registry = match config {
        Some(c) => crate::config::Registry::build(&c, 1),
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
