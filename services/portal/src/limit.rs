//! A small in-memory rate limiter: at most `per_minute` requests per key (a link, a client
//! address) in each fixed one-minute window.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
/// Beyond this many keys, the expired windows are dropped.
const SWEEP_AT: usize = 10_000;

pub struct Limiter {
    per_minute: u32,
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

impl Limiter {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute: per_minute.max(1),
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a request of `key`; false when it is over the limit.
    pub fn allow(&self, key: &str, now: Instant) -> bool {
        let mut windows = match self.windows.lock() {
            Ok(w) => w,
            Err(poisoned) => poisoned.into_inner(),
        };
        if windows.len() >= SWEEP_AT {
            windows.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        let entry = windows.entry(key.to_string()).or_insert((now, 0));
        if now.duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        entry.1 <= self.per_minute
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_over_its_limit_waits_for_the_next_window() {
        let limiter = Limiter::new(2);
        let t = Instant::now();
        assert!(limiter.allow("a", t));
        assert!(limiter.allow("a", t));
        assert!(!limiter.allow("a", t));
        assert!(limiter.allow("b", t));
        assert!(limiter.allow("a", t + WINDOW));
    }
}
