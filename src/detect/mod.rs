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
use crate::model::{Activity, Finding, Millis, MineIdx, PointIdx, Reading, Subject};

pub use anomaly::{Order, PointAnomaly, PointParams};
pub use falsify::{FalsifyParams, PointFalsify};
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

/// The open activity reasons of one subject of a mine (bits of
/// [`Activity::bit`]), opened and closed with their findings: the power and
/// seal detectors keep one per mine, power meter and camera.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenReasons(u32);

impl OpenReasons {
    /// True while `reason` is open.
    pub fn is_open(self, reason: Activity) -> bool {
        self.0 & reason.bit() != 0
    }

    /// True while any reason in the bit set `bits` is open.
    pub fn any(self, bits: u32) -> bool {
        self.0 & bits != 0
    }

    /// Opens `reason` at `ts` with a finding, unless it is open already.
    pub fn raise(
        &mut self,
        mine: MineIdx,
        subject: Subject,
        reason: Activity,
        ts: Millis,
        value: f64,
        out: &mut Vec<Finding>,
    ) {
        if !self.is_open(reason) {
            self.0 |= reason.bit();
            out.push(Finding::ActivityRaised {
                mine,
                subject,
                ts,
                reason,
                value,
            });
        }
    }

    /// Closes `reason` at `ts` with a finding, if it is open.
    pub fn close(
        &mut self,
        mine: MineIdx,
        subject: Subject,
        reason: Activity,
        ts: Millis,
        out: &mut Vec<Finding>,
    ) {
        if self.is_open(reason) {
            self.0 &= !reason.bit();
            out.push(Finding::ActivityCleared {
                mine,
                subject,
                ts,
                reason,
            });
        }
    }
}
