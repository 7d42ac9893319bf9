//! Failed sign-ins, counted per user name and per client address in a
//! sliding window: once either has `max` failures in the window, further
//! attempts are refused (429 with `Retry-After`) until the oldest failure
//! leaves the window — even with the right password, so that guessing
//! cannot continue. A success clears the name's failures (not the
//! address's). Kept in memory: a restart forgets them.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Above this many tracked keys, expired ones are swept on every failure.
const SWEEP_ABOVE: usize = 10_000;

/// The failure counter.
pub struct LoginLimiter {
    max: usize,
    window_ms: i64,
    failures: Mutex<HashMap<String, VecDeque<i64>>>,
}

impl LoginLimiter {
    /// At most `max` failures per name and per address in `window_secs`.
    pub fn new(max: u32, window_secs: u64) -> LoginLimiter {
        LoginLimiter {
            max: (max as usize).max(1),
            window_ms: (window_secs.max(1) as i64).saturating_mul(1000),
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn keys(name: &str, ip: &str) -> [String; 2] {
        [format!("name:{name}"), format!("ip:{ip}")]
    }

    /// `Err(seconds to wait)` when `name` or `ip` has used up its failures.
    pub fn check(&self, name: &str, ip: &str, now_ms: i64) -> Result<(), u64> {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let mut wait_ms = 0;
        for key in Self::keys(name, ip) {
            if let Some(times) = map.get(&key) {
                let recent: Vec<i64> = times
                    .iter()
                    .copied()
                    .filter(|t| *t > now_ms - self.window_ms)
                    .collect();
                if recent.len() >= self.max {
                    // Wait until enough failures have left the window.
                    let oldest = recent[recent.len() - self.max];
                    wait_ms = wait_ms.max(oldest + self.window_ms - now_ms);
                }
            }
        }
        if wait_ms > 0 {
            Err(((wait_ms + 999) / 1000) as u64)
        } else {
            Ok(())
        }
    }

    /// Records a failed attempt.
    pub fn failed(&self, name: &str, ip: &str, now_ms: i64) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let cutoff = now_ms - self.window_ms;
        if map.len() > SWEEP_ABOVE {
            map.retain(|_, t| t.back().is_some_and(|last| *last > cutoff));
        }
        for key in Self::keys(name, ip) {
            let times = map.entry(key).or_default();
            while times.front().is_some_and(|t| *t <= cutoff) {
                times.pop_front();
            }
            times.push_back(now_ms);
            while times.len() > self.max {
                times.pop_front();
            }
        }
    }

    /// Records a success: the name's failures are forgotten.
    pub fn succeeded(&self, name: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&format!("name:{name}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_then_refused_until_the_window_passes() {
        let l = LoginLimiter::new(5, 900);
        let t0 = 1_000_000;
        for i in 0..5 {
            assert_eq!(l.check("zs", "10.0.0.1", t0 + i), Ok(()), "attempt {i}");
            l.failed("zs", "10.0.0.1", t0 + i);
        }
        // The 6th attempt is refused, for about the window.
        assert_eq!(l.check("zs", "10.0.0.1", t0 + 10), Err(900));
        // By name from another address, and by address for another name.
        assert!(l.check("zs", "10.0.0.2", t0 + 10).is_err());
        assert!(l.check("ls", "10.0.0.1", t0 + 10).is_err());
        assert_eq!(l.check("ls", "10.0.0.2", t0 + 10), Ok(()));
        // The first failure leaves the window: one more try.
        assert_eq!(l.check("zs", "10.0.0.2", t0 + 900_000), Ok(()));
    }

    #[test]
    fn a_success_clears_the_name_not_the_address() {
        let l = LoginLimiter::new(3, 60);
        for i in 0..3 {
            l.failed("zs", "10.0.0.1", i);
        }
        l.succeeded("zs");
        assert_eq!(l.check("zs", "10.0.0.2", 10), Ok(()));
        assert!(l.check("zs", "10.0.0.1", 10).is_err());
    }
}
