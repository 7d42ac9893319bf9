//! The simulator's national-file writer: for each chosen mine, a CDDY file
//! with its point definitions (declared at the rules' levels) at start, then
//! a CDSS file of every point that is not silent each period, as the mine's
//! monitoring system would upload them. Files appear atomically (written
//! under a hidden name, then renamed), as FTP servers that upload to a
//! temporary name do.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::config::registry::{rule_limits, unit_of};
use crate::config::{Config, RulesConfig};
use crate::ingest::netfile::format::write;
use crate::model::{LocationClass, SensorType};
use crate::simulators::publish::Published;
use crate::simulators::scenario::{Scenario, Simulation};

/// What to write.
pub struct NetfilePlan {
    /// The whole province (the scenario's mine roles follow its indices).
    pub province: Config,
    /// Indices of the mines that upload files.
    pub mines: Vec<usize>,
    /// The script.
    pub scenario: Scenario,
    /// Time between CDSS files of one mine.
    pub period: Duration,
    /// Stop after this long (`None`: until shutdown).
    pub duration: Option<Duration>,
    /// RNG seed.
    pub seed: u64,
}

/// Delivers a file as an upload should: written under a hidden name, then
/// renamed, so a watcher never reads it half-written.
pub fn put(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.part"));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, dir.join(name))
}

/// The CDDY file of mine `m` of `province` at `at`.
pub fn cddy(province: &Config, m: usize, at: i64) -> (String, String) {
    let mine = &province.mines[m];
    let rules = RulesConfig::default();
    let records: Vec<Vec<String>> = mine
        .points
        .iter()
        .enumerate()
        .map(|(j, p)| {
            let sensor = SensorType::parse(&p.sensor).unwrap_or(SensorType::Other(0));
            let location = LocationClass::parse(&p.location).unwrap_or(LocationClass::Other);
            let rule = rule_limits(&rules, sensor, location);
            let range = match sensor {
                SensorType::CarbonMonoxide => [0.0, 1000.0],
                s if s.gas().is_some() => [0.0, 4.0],
                _ => [0.0, 100.0],
            };
            write::cddy(
                &p.code,
                if j < 16 { "01" } else { "02" },
                &sensor.code_text(),
                unit_of(sensor),
                range,
                rule.map(|r| r.alarm),
                rule.and_then(|r| r.power_off),
                rule.map(|r| r.restore),
                p.place.as_deref().unwrap_or(""),
                at,
            )
        })
        .collect();
    let header = vec![
        mine.code.clone(),
        mine.name.clone(),
        "KJ-SIM".into(),
        "安全监控系统".into(),
        "minewatch simulator".into(),
        "2030-12-31".into(),
        crate::ingest::netfile::format::format_time(at),
    ];
    (
        write::name(&mine.code, "CDDY", at),
        write::file(&header, &records),
    )
}

/// Writes the plan's files into `dir` until its duration ends or
/// `shutdown` turns true.
pub async fn run(
    dir: PathBuf,
    plan: NetfilePlan,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Published> {
    std::fs::create_dir_all(&dir)?;
    let now = || chrono::Utc::now().timestamp_millis();
    for &m in &plan.mines {
        let (name, text) = cddy(&plan.province, m, now());
        put(&dir, &name, text.as_bytes())?;
    }
    let mut sim = Simulation::new(&plan.province, plan.scenario, plan.seed);
    let mut every = tokio::time::interval(plan.period);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let start = Instant::now();
    let mut stats = Published::default();
    // One file name per mine and second: a second file in the same second
    // waits for the next tick.
    let mut last_stamp = vec![String::new(); plan.province.mines.len()];
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = every.tick() => {}
        }
        let elapsed = start.elapsed();
        if plan.duration.is_some_and(|d| elapsed >= d) {
            break;
        }
        let t = elapsed.as_secs_f64();
        let at = now();
        for &m in &plan.mines {
            let mine = &plan.province.mines[m];
            if sim.mine_silent(m, t) {
                continue;
            }
            let name = write::name(&mine.code, "CDSS", at);
            if last_stamp[m] == name {
                continue;
            }
            let records: Vec<Vec<String>> = mine
                .points
                .iter()
                .enumerate()
                .filter_map(|(j, p)| {
                    let s = sim.sample(m, j, t)?;
                    let sensor = SensorType::parse(&p.sensor).unwrap_or(SensorType::Other(0));
                    Some(write::cdss(
                        &p.code,
                        sensor.name(),
                        p.place.as_deref().unwrap_or(""),
                        s.value,
                        unit_of(sensor),
                        s.status,
                        at,
                    ))
                })
                .collect();
            if records.is_empty() {
                continue;
            }
            stats.readings += records.len() as u64;
            stats.messages += 1;
            let text = write::file(&write::header(&mine.code, &mine.name, at), &records);
            put(&dir, &name, text.as_bytes())?;
            last_stamp[m] = name;
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::netfile::format::{parse_name, split};
    use crate::simulators::province::{ProvinceSpec, province};

    #[test]
    fn the_cddy_file_declares_every_point_at_the_rules_levels() {
        let p = province(ProvinceSpec {
            mines: 3,
            points: 32,
            polling_secs: 5.0,
        });
        let (name, text) = cddy(&p, 1, 1_795_420_800_000);
        assert_eq!(parse_name(&name).expect("name").mine, p.mines[1].code);
        let r = split(&text).expect("records");
        assert_eq!(r.records.len(), 32);
        assert!(r.records.iter().all(|rec| rec.len() == 24));
        // Face T1 methane: alarm 1.0, power-off 1.5.
        assert_eq!((r.records[0][8], r.records[0][12]), ("1", "1.5"));
        assert_eq!(r.records[0][18], "1101工作面");
        assert_eq!(r.records[20][2], "02");
    }
}
