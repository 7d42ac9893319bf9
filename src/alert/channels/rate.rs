//! Per-channel rate limit: at most `limit` messages in any `window`
//! (a minute in production). Time is passed in, so it is pure.
//!
//! This is a sliding-window log rather than a refilling token bucket on
//! purpose: a bucket of 20 tokens refilled at 20 a minute lets 40 messages
//! through within one minute (a full bucket, then the refill), which is
//! exactly what WeCom and DingTalk punish; the log never allows more than
//! `limit` in any window. The "tokens" available are the free slots.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A sliding-window message limit.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    limit: usize,
    window: Duration,
    /// Times of the sends still inside the window, oldest first.
    sent: VecDeque<Instant>,
}

impl RateLimiter {
    /// At most `limit` (at least 1) sends in any `window`.
    pub fn new(limit: u32, window: Duration) -> RateLimiter {
        RateLimiter {
            limit: limit.max(1) as usize,
            window,
            sent: VecDeque::new(),
        }
    }

    /// At most `n` a minute.
    pub fn per_minute(n: u32) -> RateLimiter {
        RateLimiter::new(n, Duration::from_secs(60))
    }

    fn prune(&mut self, now: Instant) {
        while let Some(&t) = self.sent.front() {
            if now.saturating_duration_since(t) >= self.window {
                self.sent.pop_front();
            } else {
                break;
            }
        }
    }

    /// Sends allowed at `now` (free slots).
    pub fn available(&mut self, now: Instant) -> usize {
        self.prune(now);
        self.limit.saturating_sub(self.sent.len())
    }

    /// Takes a slot at `now` if one is free.
    pub fn try_take(&mut self, now: Instant) -> bool {
        if self.available(now) == 0 {
            return false;
        }
        self.sent.push_back(now);
        true
    }

    /// When the next slot frees up; `now` if one is free.
    pub fn next_free(&mut self, now: Instant) -> Instant {
        if self.available(now) > 0 {
            return now;
        }
        // Full: the oldest send leaves the window first.
        self.sent.front().map_or(now, |&t| t + self.window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_more_than_the_limit_in_any_window() {
        let t0 = Instant::now();
        let mut r = RateLimiter::per_minute(20);
        assert_eq!(r.available(t0), 20);
        for _ in 0..20 {
            assert!(r.try_take(t0));
        }
        assert!(!r.try_take(t0));
        assert!(!r.try_take(t0 + Duration::from_secs(59)));
        assert_eq!(
            r.next_free(t0 + Duration::from_secs(30)),
            t0 + Duration::from_secs(60)
        );
        // A minute after, all 20 slots are free again, not more.
        let t1 = t0 + Duration::from_secs(60);
        assert_eq!(r.available(t1), 20);
    }

    #[test]
    fn slots_free_one_by_one_as_sends_age_out() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut r = RateLimiter::new(3, Duration::from_secs(10));
        assert!(r.try_take(t0));
        assert!(r.try_take(t0 + 2 * s));
        assert!(r.try_take(t0 + 4 * s));
        assert_eq!(r.available(t0 + 9 * s), 0);
        assert_eq!(r.available(t0 + 10 * s), 1);
        assert!(r.try_take(t0 + 10 * s));
        assert_eq!(r.available(t0 + 11 * s), 0);
        assert_eq!(r.next_free(t0 + 11 * s), t0 + 12 * s);
        assert_eq!(r.available(t0 + 14 * s), 2);
    }

    #[test]
    fn a_simulated_hour_never_exceeds_the_limit_in_a_sliding_window() {
        let t0 = Instant::now();
        let mut r = RateLimiter::per_minute(20);
        let mut sends = Vec::new();
        // Try to send every 100 ms for an hour.
        for i in 0..36_000u64 {
            let now = t0 + Duration::from_millis(100 * i);
            if r.try_take(now) {
                sends.push(now);
            }
        }
        for (i, &t) in sends.iter().enumerate() {
            let in_window = sends[i..]
                .iter()
                .take_while(|&&u| u < t + Duration::from_secs(60))
                .count();
            assert!(in_window <= 20);
        }
        assert_eq!(sends.len(), 20 * 60);
    }

    #[test]
    fn a_zero_limit_still_lets_one_through() {
        let mut r = RateLimiter::new(0, Duration::from_secs(60));
        assert!(r.try_take(Instant::now()));
    }
}
