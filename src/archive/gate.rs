//! A bound in bytes on what sits between two threads: the sender takes
//! room for each message before it sends it and waits while the room is
//! taken; the receiver gives the room back once it has dealt with the
//! message. It makes a channel bounded in memory rather than in messages
//! (crossbeam's channels count messages, and an archive message may hold
//! one reading or a hundred thousand).

use std::sync::{Condvar, Mutex};

/// Room for `limit` bytes between a sender and a receiver.
#[derive(Debug)]
pub struct ByteGate {
    state: Mutex<GateState>,
    freed: Condvar,
    limit: usize,
}

#[derive(Debug, Default)]
struct GateState {
    used: usize,
    closed: bool,
}

impl ByteGate {
    /// A gate that lets `limit` bytes through at once (and always one
    /// message, whatever its size, when nothing else is inside).
    pub fn new(limit: usize) -> ByteGate {
        ByteGate {
            state: Mutex::new(GateState::default()),
            freed: Condvar::new(),
            limit: limit.max(1),
        }
    }

    /// Takes room for `bytes`, waiting while there is none. Returns false,
    /// without taking room, once the receiver has closed the gate.
    pub fn enter(&self, bytes: usize) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while !s.closed && s.used > 0 && s.used.saturating_add(bytes) > self.limit {
            s = self.freed.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        if s.closed {
            return false;
        }
        s.used += bytes;
        true
    }

    /// Gives back the room of `bytes`.
    pub fn leave(&self, bytes: usize) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.used = s.used.saturating_sub(bytes);
        self.freed.notify_all();
    }

    /// The receiver has stopped: nobody waits any more.
    pub fn close(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.closed = true;
        self.freed.notify_all();
    }

    /// Bytes inside now.
    pub fn used(&self) -> usize {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).used
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn a_sender_waits_until_the_receiver_gives_room_back() {
        let gate = Arc::new(ByteGate::new(100));
        assert!(gate.enter(60));
        let g = gate.clone();
        let waiting = std::thread::spawn(move || g.enter(60));
        std::thread::sleep(Duration::from_millis(100));
        assert!(!waiting.is_finished(), "60 + 60 > 100: it waits");
        assert_eq!(gate.used(), 60);
        gate.leave(60);
        assert!(waiting.join().unwrap());
        assert_eq!(gate.used(), 60);
    }

    #[test]
    fn one_large_message_passes_alone_and_closing_frees_every_waiter() {
        let gate = Arc::new(ByteGate::new(100));
        assert!(gate.enter(1_000), "alone, a message of any size passes");
        let g = gate.clone();
        let waiting = std::thread::spawn(move || g.enter(1));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiting.is_finished());
        gate.close();
        assert!(!waiting.join().unwrap(), "closed: refused, not stuck");
        assert!(!gate.enter(1));
    }
}
