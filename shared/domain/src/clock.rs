//! The one clock every service reads. Injected, so that tests and the demo can run weeks of
//! a ledger in seconds on a simulated clock (like Stripe's test clocks).

use chrono::{DateTime, Duration, Utc};
use std::sync::{Arc, RwLock};

pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

pub type SharedClock = Arc<dyn Clock>;

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to. Clones share the same time.
#[derive(Debug, Clone)]
pub struct SimulatedClock {
    now: Arc<RwLock<DateTime<Utc>>>,
}

impl SimulatedClock {
    pub fn starting_at(start: DateTime<Utc>) -> Self {
        Self {
            now: Arc::new(RwLock::new(start)),
        }
    }

    pub fn advance(&self, by: Duration) -> DateTime<Utc> {
        let mut now = self.now.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        *now += by;
        *now
    }

    pub fn set(&self, to: DateTime<Utc>) {
        let mut now = self.now.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        *now = to;
    }
}

impl Clock for SimulatedClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulated_clock_moves_only_when_advanced_and_clones_share_time() {
        let start = DateTime::parse_from_rfc3339("2026-01-01T08:00:00Z").map(|d| d.with_timezone(&Utc));
        let clock = SimulatedClock::starting_at(start.unwrap_or_default());
        let other = clock.clone();
        assert_eq!(clock.now(), other.now());
        clock.advance(Duration::days(3));
        assert_eq!(other.now().to_rfc3339(), "2026-01-04T08:00:00+00:00");
    }
}
