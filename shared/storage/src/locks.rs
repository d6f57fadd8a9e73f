//! The PostgreSQL advisory locks relance takes, in one place so that no two share a key
//! (each an arbitrary constant: "relance" in ASCII and a number). A lock taken under another
//! one's key would make unrelated work wait or skip.

/// The retention purge: one process purges at a time (transaction level).
pub const RETENTION_PURGE: i64 = 0x7265_6c61_6e63_6501;
/// The collections gauges: one process computes them (session level).
pub const GAUGES: i64 = 0x7265_6c61_6e63_6502;
/// The console's snapshot: consoles on one database take turns (session level).
pub const CONSOLE_SNAPSHOT_TURN: i64 = 0x7265_6c61_6e63_6503;
/// The outbox relay: one relay drains the outbox at a time (transaction level).
pub const OUTBOX_DRAINING: i64 = 0x7265_6c61_6e63_6504;
/// The outbox relays: one leads, listening for commits; the others stand by (session level).
pub const OUTBOX_LEADER: i64 = 0x7265_6c61_6e63_6505;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_two_locks_share_a_key() {
        let keys = [
            RETENTION_PURGE,
            GAUGES,
            CONSOLE_SNAPSHOT_TURN,
            OUTBOX_DRAINING,
            OUTBOX_LEADER,
        ];
        let distinct: std::collections::BTreeSet<i64> = keys.iter().copied().collect();
        assert_eq!(distinct.len(), keys.len(), "{keys:x?}");
    }
}
