//! Telling a source that a message is done: a [`Completion`] counts down
//! the parts of one message (a batch per shard it touched, then the
//! journal's fsync) and tells the source's [`AckSink`] when the last part
//! is done, so that the source acknowledges the message to its broker only
//! once its readings are durable. It sits below both the pipeline and the
//! archive, which each complete parts of a message.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Receives completions of messages, in any order.
pub trait AckSink: Send + Sync {
    /// Every part of the message with this token has been processed.
    fn complete(&self, token: u64);
}

/// Counts down the parts of one message; the last part tells the sink.
pub struct Completion {
    remaining: AtomicUsize,
    token: u64,
    sink: Arc<dyn AckSink>,
}

impl Completion {
    /// A message of `parts` parts.
    pub fn new(parts: usize, token: u64, sink: Arc<dyn AckSink>) -> Arc<Completion> {
        Arc::new(Completion {
            remaining: AtomicUsize::new(parts),
            token,
            sink,
        })
    }

    /// One part is done.
    pub fn part_done(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.sink.complete(self.token);
        }
    }
}
