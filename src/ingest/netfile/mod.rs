//! The national networking text files (CDDY, CDSS, FZSS, YCBJ) that mines'
//! monitoring systems upload into a drop directory: the format, the
//! watcher that processes each file exactly once, and the book of the
//! mines' own exception reports.

pub mod exceptions;
pub mod format;
pub mod watch;

pub use exceptions::{ExceptionBook, ExceptionRecord};
pub use watch::NetfileSource;
