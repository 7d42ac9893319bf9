//! Sign-in attempts, counted before the password is checked.
//!
//! Each attempt takes a slot at once ([`LoginLimiter::begin`]): it counts
//! as a failure from that moment, under one lock, and is taken back only if
//! the password turns out right. So a burst of parallel requests cannot all
//! pass the check before any of them fails: beyond the limit they are
//! refused at once (429 with `Retry-After`).
//!
//! Three counts, each in a sliding window:
//!
//! - per (name, client address): `max_pair` failures, then refused — the
//!   guesser is stopped, the real user at another address is not;
//! - per client address over all names: `max_address` failures, then
//!   refused (a spray of names from one place);
//! - per name over all addresses: after `max_pair` failures every further
//!   attempt for the name waits first, doubling from one second up to
//!   `max_delay`, but is never refused — so guessing from many places slows
//!   down while nobody can lock the real user out.
//!
//! And one address may have at most `concurrent_per_address` attempts in
//! progress; more are refused at once, so one address cannot hold every
//! password-check slot. Kept in memory: a restart forgets it all.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

/// Above this many tracked keys, expired ones are swept at each attempt.
const SWEEP_ABOVE: usize = 10_000;
/// Failures remembered per name (enough to reach the longest delay).
const NAME_KEEP: usize = 64;
/// The first delay of a name with too many failures.
const FIRST_DELAY_MS: u64 = 1000;

/// How many attempts are allowed.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Failures per (name, address) in the window; then refused.
    pub max_pair: u32,
    /// Failures per address over all names in the window; then refused.
    pub max_address: u32,
    /// The window, seconds.
    pub window_secs: u64,
    /// The longest wait of a name with many failures.
    pub max_delay: Duration,
    /// Attempts in progress per address; more are refused at once.
    pub concurrent_per_address: usize,
}

#[derive(Default)]
struct State {
    failures: HashMap<String, VecDeque<i64>>,
    in_flight: HashMap<String, usize>,
}

/// The attempt counter.
pub struct LoginLimiter {
    limits: Limits,
    window_ms: i64,
    state: Mutex<State>,
}

/// An attempt in progress: counted as a failure until
/// [`Attempt::succeeded`]; dropping it ends it.
pub struct Attempt<'a> {
    limiter: &'a LoginLimiter,
    name: String,
    ip: String,
    at_ms: i64,
    delay: Duration,
}

fn pair_key(name: &str, ip: &str) -> String {
    // An address never holds a NUL: the key is unambiguous whatever the
    // name.
    format!("pair:{ip}\u{0}{name}")
}

fn ip_key(ip: &str) -> String {
    format!("ip:{ip}")
}

fn name_key(name: &str) -> String {
    format!("name:{name}")
}

impl LoginLimiter {
    /// A counter with these limits.
    pub fn new(limits: Limits) -> LoginLimiter {
        LoginLimiter {
            limits: Limits {
                max_pair: limits.max_pair.max(1),
                max_address: limits.max_address.max(1),
                window_secs: limits.window_secs.max(1),
                max_delay: limits.max_delay,
                concurrent_per_address: limits.concurrent_per_address.max(1),
            },
            window_ms: (limits.window_secs.max(1) as i64).saturating_mul(1000),
            state: Mutex::new(State::default()),
        }
    }

    fn recent(&self, times: Option<&VecDeque<i64>>, now_ms: i64) -> Vec<i64> {
        times
            .map(|t| {
                t.iter()
                    .copied()
                    .filter(|t| *t > now_ms - self.window_ms)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Starts an attempt of `name` from `ip`: counted at once as a failure;
    /// `Err(seconds to wait)` when refused.
    pub fn begin(&self, name: &str, ip: &str, now_ms: i64) -> Result<Attempt<'_>, u64> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let cutoff = now_ms - self.window_ms;
        if st.failures.len() > SWEEP_ABOVE {
            st.failures
                .retain(|_, t| t.back().is_some_and(|last| *last > cutoff));
        }
        if st.in_flight.get(ip).copied().unwrap_or(0) >= self.limits.concurrent_per_address {
            return Err(1);
        }
        let mut wait_ms = 0;
        for (key, max) in [
            (pair_key(name, ip), self.limits.max_pair as usize),
            (ip_key(ip), self.limits.max_address as usize),
        ] {
            let recent = self.recent(st.failures.get(&key), now_ms);
            if recent.len() >= max {
                // Wait until enough failures have left the window.
                let oldest = recent[recent.len() - max];
                wait_ms = wait_ms.max(oldest + self.window_ms - now_ms);
            }
        }
        if wait_ms > 0 {
            return Err(((wait_ms + 999) / 1000) as u64);
        }
        let by_name = self.recent(st.failures.get(&name_key(name)), now_ms).len();
        let over = by_name.saturating_sub(self.limits.max_pair as usize);
        let delay = if by_name >= self.limits.max_pair as usize {
            let ms = FIRST_DELAY_MS.saturating_mul(1u64 << over.min(20));
            Duration::from_millis(ms).min(self.limits.max_delay)
        } else {
            Duration::ZERO
        };
        for (key, keep) in [
            (pair_key(name, ip), self.limits.max_pair as usize),
            (ip_key(ip), self.limits.max_address as usize),
            (name_key(name), NAME_KEEP),
        ] {
            let times = st.failures.entry(key).or_default();
            while times.front().is_some_and(|t| *t <= cutoff) {
                times.pop_front();
            }
            times.push_back(now_ms);
            while times.len() > keep {
                times.pop_front();
            }
        }
        *st.in_flight.entry(ip.to_string()).or_default() += 1;
        Ok(Attempt {
            limiter: self,
            name: name.to_string(),
            ip: ip.to_string(),
            at_ms: now_ms,
            delay,
        })
    }

    /// Failures counted for (`name`, `ip`) in the window (for tests and
    /// the log).
    pub fn failures(&self, name: &str, ip: &str, now_ms: i64) -> usize {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.recent(st.failures.get(&pair_key(name, ip)), now_ms)
            .len()
    }
}

impl Attempt<'_> {
    /// How long to wait before checking the password (the name has many
    /// failures from everywhere).
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// The password was right: this attempt is no failure, and the failures
    /// of the name (from this address and everywhere) are forgotten; those
    /// of the address for other names stay.
    pub fn succeeded(self) {
        let mut st = self.limiter.state.lock().unwrap_or_else(|p| p.into_inner());
        st.failures.remove(&pair_key(&self.name, &self.ip));
        st.failures.remove(&name_key(&self.name));
        if let Some(times) = st.failures.get_mut(&ip_key(&self.ip))
            && let Some(i) = times.iter().rposition(|t| *t == self.at_ms)
        {
            times.remove(i);
        }
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        let mut st = self.limiter.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = st.in_flight.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                st.in_flight.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(max_pair: u32, max_address: u32, window_secs: u64) -> LoginLimiter {
        LoginLimiter::new(Limits {
            max_pair,
            max_address,
            window_secs,
            max_delay: Duration::from_secs(8),
            concurrent_per_address: 2,
        })
    }

    #[test]
    fn five_failures_then_refused_until_the_window_passes() {
        let l = limiter(5, 50, 900);
        let t0 = 1_000_000;
        for i in 0..5 {
            let a = l.begin("zs", "10.0.0.1", t0 + i).expect("attempt");
            drop(a);
        }
        // The 6th attempt is refused, for about the window.
        assert_eq!(l.begin("zs", "10.0.0.1", t0 + 10).err(), Some(900));
        // The name from another address is not refused (it waits), nor
        // another name from this address.
        assert!(l.begin("zs", "10.0.0.2", t0 + 10).is_ok());
        assert!(l.begin("ls", "10.0.0.1", t0 + 10).is_ok());
        // The first failure leaves the window: one more try.
        assert!(l.begin("zs", "10.0.0.1", t0 + 900_000).is_ok());
    }

    #[test]
    fn an_attempt_counts_before_it_is_checked() {
        // Parallel attempts that have not finished yet count already: the
        // fourth is refused while three are still being checked.
        let l = LoginLimiter::new(Limits {
            max_pair: 3,
            max_address: 50,
            window_secs: 60,
            max_delay: Duration::from_secs(8),
            concurrent_per_address: 10,
        });
        let held: Vec<_> = (0..3)
            .map(|_| l.begin("zs", "10.0.0.1", 5).expect("attempt"))
            .collect();
        assert!(l.begin("zs", "10.0.0.1", 5).is_err());
        assert_eq!(l.failures("zs", "10.0.0.1", 5), 3);
        // One of them succeeds: the pair's failures are forgotten.
        let mut held = held.into_iter();
        held.next().expect("one").succeeded();
        assert_eq!(l.failures("zs", "10.0.0.1", 6), 0);
        assert!(l.begin("zs", "10.0.0.1", 6).is_ok());
    }

    #[test]
    fn one_address_may_run_only_a_few_attempts_at_once() {
        let l = limiter(100, 100, 60);
        let a = l.begin("a", "10.0.0.1", 1).expect("first");
        let b = l.begin("b", "10.0.0.1", 1).expect("second");
        assert_eq!(l.begin("c", "10.0.0.1", 1).err(), Some(1));
        // Another address is not held up.
        assert!(l.begin("c", "10.0.0.2", 1).is_ok());
        drop(a);
        assert!(l.begin("c", "10.0.0.1", 1).is_ok());
        drop(b);
    }

    #[test]
    fn many_failures_of_a_name_slow_it_everywhere_without_refusing() {
        let l = limiter(3, 50, 600);
        // Three addresses fail three times each for one name.
        let mut t = 1_000;
        for ip in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
            for _ in 0..3 {
                t += 1;
                let a = l.begin("duty", ip, t).expect("attempt");
                drop(a);
            }
        }
        // The real user from a fourth address is let in, after a wait that
        // grows with the failures but stays under the cap.
        let a = l.begin("duty", "10.0.0.9", t + 1).expect("not refused");
        assert_eq!(a.delay(), Duration::from_secs(8));
        a.succeeded();
        // Their success forgets the name's failures: no more waiting.
        let a = l.begin("duty", "10.0.0.9", t + 2).expect("attempt");
        assert_eq!(a.delay(), Duration::ZERO);
        // The first few failures of a name cost nothing.
        let l = limiter(3, 50, 600);
        let a = l.begin("x", "10.0.0.1", 1).expect("attempt");
        assert_eq!(a.delay(), Duration::ZERO);
    }

    #[test]
    fn an_address_spraying_names_is_refused() {
        let l = limiter(5, 4, 60);
        for (i, name) in ["a", "b", "c", "d"].iter().enumerate() {
            drop(l.begin(name, "10.0.0.1", i as i64).expect("attempt"));
        }
        assert!(l.begin("e", "10.0.0.1", 10).is_err());
        assert!(l.begin("e", "10.0.0.2", 10).is_ok());
    }
}
