//! Reading the archive back: [`replay`] runs the detectors over archived
//! readings in event time and rebuilds the alert episodes, [`compare`]
//! sets them against the live alerts the archive also holds, and [`audit`]
//! ranks the falsification and anomaly findings with their evidence for an
//! auditor. The archive itself (journal, files, retention) is
//! [`crate::archive`]; this module only reads what it wrote.

pub mod audit;
pub mod compare;
pub mod replay;
