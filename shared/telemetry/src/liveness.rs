//! Loop liveness: each long-running loop of a service (the scheduler's pass, the outbox
//! relay, each consumer) beats when it completes an iteration; the health server reports a
//! loop whose last beat is older than a threshold (`RELANCE_LOOP_STALL_MS`) as stalled, and
//! exports each loop's age as `relance_loop_last_success_seconds`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The loops of one service and when each last completed an iteration.
#[derive(Debug, Clone, Default)]
pub struct Heartbeats(Arc<Mutex<BTreeMap<String, Instant>>>);

impl Heartbeats {
    /// A loop named `name` (e.g. `outbox relay`), counted from now: a loop that never
    /// completes is reported once the threshold has passed since it started.
    pub fn register(&self, name: &str) -> Heartbeat {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_string(), Instant::now());
        Heartbeat {
            beats: self.clone(),
            name: Arc::from(name),
        }
    }

    /// Each loop and the time since its last completed iteration, by name.
    pub fn ages(&self) -> BTreeMap<String, Duration> {
        let now = Instant::now();
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(name, at)| (name.clone(), now.saturating_duration_since(*at)))
            .collect()
    }

    fn beat(&self, name: &str) {
        if let Some(at) = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(name)
        {
            *at = Instant::now();
        }
    }
}

/// One loop's heartbeat: [`Heartbeat::beat`] after each completed iteration.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    beats: Heartbeats,
    name: Arc<str>,
}

impl Heartbeat {
    /// A heartbeat nobody watches (a loop run outside a service, e.g. by a test).
    pub fn unwatched(name: &str) -> Self {
        Heartbeats::default().register(name)
    }

    pub fn beat(&self) {
        self.beats.beat(&self.name);
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_that_beats_is_young_and_one_that_does_not_ages() {
        let beats = Heartbeats::default();
        let relay = beats.register("outbox relay");
        let _pass = beats.register("scheduler pass");
        std::thread::sleep(Duration::from_millis(30));
        relay.beat();
        let ages = beats.ages();
        assert!(ages["outbox relay"] < Duration::from_millis(30), "{ages:?}");
        assert!(ages["scheduler pass"] >= Duration::from_millis(30), "{ages:?}");
    }
}
