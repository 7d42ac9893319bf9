//! The detectors: pure state machines that turn readings (in event time) and
//! ticks (processing time, offline detection only) into [`Finding`]s.
//!
//! A detector does no I/O, reads no clock and allocates nothing per reading:
//! it is handed its state, the point's metadata, one reading and a reusable
//! output buffer. Live ingest and replay run the same code, so every detector
//! is tested with a table of readings and an explicit clock.
//!
//! Most detectors watch one point's readings; [`power`] and [`seal`] watch a
//! whole mine's electricity feed and electronic-seal cameras.

pub mod anomaly;
pub mod falsify;
pub mod neighbours;
pub mod offline;
pub mod over_limit;
pub mod power;
pub mod replay;
pub mod seal;

use crate::config::PointMeta;
use crate::model::{Finding, PointIdx, Reading};

pub use anomaly::{Order, PointAnomaly, PointParams};
pub use falsify::PointFalsify;
pub use neighbours::{MinuteSeries, Path};
pub use offline::{MineLink, MineOffline};
pub use over_limit::{Applied, OverLimit};
pub use power::{MinePower, PowerApplied};
pub use replay::ReplayIndex;
pub use seal::{MineSeal, SealApplied};

/// A detector whose state belongs to one point.
pub trait PointDetector: Default + Send {
    /// Applies one reading of the point `point` (described by `meta`);
    /// findings are appended to `out`.
    fn on_reading(
        &mut self,
        meta: &PointMeta,
        point: PointIdx,
        reading: &Reading,
        out: &mut Vec<Finding>,
    ) -> Applied;
}
