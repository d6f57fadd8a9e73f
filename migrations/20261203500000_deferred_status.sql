-- `deferred`: a delivery refused for now (a 4xx, a refused connection) waits for its retry,
-- visibly, with the time of its next attempt (`next_attempt_at`, on relance's clock). Until
-- now such a step went back to `rendered`, where the lease sweep re-drove it as soon as the
-- lease ran out, before its backoff was over.
-- `retry_wall_at` is the wall-clock time its retry is due back from the delay queue: the
-- sweep re-drives a deferred step only once that time plus the lease has passed (its retry
-- message was lost).
ALTER TABLE reminder_steps ADD COLUMN retry_wall_at timestamptz;

ALTER TABLE reminder_steps DROP CONSTRAINT reminder_steps_status_check;
ALTER TABLE reminder_steps ADD CONSTRAINT reminder_steps_status_check
    CHECK (status IN ('pending', 'queued', 'rendered', 'deferred', 'sending', 'sent', 'skipped', 'cancelled',
                      'failed', 'awaiting_outcome', 'completed', 'expired', 'ambiguous'));

UPDATE reminder_steps SET status = 'deferred', retry_wall_at = status_changed_at
    WHERE status = 'rendered' AND next_attempt_at IS NOT NULL;

CREATE INDEX reminder_steps_deferred ON reminder_steps (retry_wall_at) WHERE status = 'deferred';
