-- How far each delivery got, and a payment seen while it was going out (issue 12).
--
-- A sender claims a step (`rendered` -> `sending`) under a fresh `delivery_attempt` and then
-- talks to its provider with no transaction open. It records each stage in a short
-- statement of its own: `claimed`, `connected`, `envelope_accepted` (MAIL/RCPT/DATA taken),
-- `data_end_sent` (committed after the last check, right before the end of DATA or the
-- provider's request), `answered` (the provider accepted it). The lease sweep reads the
-- stage of a step whose sender died: before `data_end_sent` nothing went out and it is
-- delivered again; at `data_end_sent` the delivery is ambiguous; at `answered` it was sent.
--
-- A payment (or a closure) never cancels a step in `sending`: it sets `stop_requested_at`
-- and `stop_reason`, and the sender decides (abort before the end of DATA: cancelled; or,
-- if it already went out, `reminder.sent` with the payment's time beside it).
ALTER TABLE reminder_steps ADD COLUMN delivery_attempt uuid;
ALTER TABLE reminder_steps ADD COLUMN delivery_stage text
    CHECK (delivery_stage IN ('claimed', 'connected', 'envelope_accepted', 'data_end_sent', 'answered'));
ALTER TABLE reminder_steps ADD COLUMN stop_requested_at timestamptz;
ALTER TABLE reminder_steps ADD COLUMN stop_reason text;
-- A delivery deferred by a transient failure: when it is tried next (the reason is the
-- step's status_reason).
ALTER TABLE reminder_steps ADD COLUMN next_attempt_at timestamptz;

-- `ambiguous`: the sender died after the end of DATA was sent and before the answer was
-- recorded; the message may or may not have reached the server (final, reported).
ALTER TABLE reminder_steps DROP CONSTRAINT reminder_steps_status_check;
ALTER TABLE reminder_steps ADD CONSTRAINT reminder_steps_status_check
    CHECK (status IN ('pending', 'queued', 'rendered', 'sending', 'sent', 'skipped', 'cancelled', 'failed',
                      'awaiting_outcome', 'completed', 'expired', 'ambiguous'));
