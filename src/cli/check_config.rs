//! `minewatch check-config`: every config error at once, with its key path.

use std::process::ExitCode;

use crate::config;

/// `minewatch check-config FILE`: exit 0 when the file is usable, 2 when
/// it has errors (all of them printed).
pub fn check_config(file: &std::path::Path) -> ExitCode {
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
