-- Phone-call tasks and channel fallbacks.
--
-- A step on channel `call` is not delivered by a sender: the renderer writes the call script
-- and opens a task for the accounts team. The step then waits in `awaiting_outcome` (outside
-- the lease sweep, which only looks at queued, rendered and sending) until the caller records
-- the outcome (`completed`), the invoice is paid or closed (`cancelled`), or the task expires
-- (`expired`). A call that obtained a promise is confirmed by email: a step of kind `recap`.
ALTER TABLE reminder_steps DROP CONSTRAINT reminder_steps_status_check;
ALTER TABLE reminder_steps ADD CONSTRAINT reminder_steps_status_check
    CHECK (status IN ('pending', 'queued', 'rendered', 'sending', 'sent', 'skipped', 'cancelled', 'failed',
                      'awaiting_outcome', 'completed', 'expired'));
ALTER TABLE reminder_steps DROP CONSTRAINT reminder_steps_kind_check;
ALTER TABLE reminder_steps ADD CONSTRAINT reminder_steps_kind_check
    CHECK (kind IN ('reminder', 'thanks', 'recap'));

-- One row per call task (the step's rendered message holds the script). The task is open
-- while its step is `awaiting_outcome`; the outcome, once recorded, stays here as proof.
CREATE TABLE call_tasks (
    step_id       uuid PRIMARY KEY REFERENCES reminder_steps (id),
    invoice_id    uuid NOT NULL REFERENCES invoices (id),
    phone         text NOT NULL,
    opened_at     timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    outcome       text CHECK (outcome IN ('reached', 'disputed', 'no_answer')),
    promised_on   date,
    reason        text,
    note          text,
    -- The call.outcome message that recorded the outcome.
    event_id      text,
    recorded_at   timestamptz,
    recap_step_id uuid REFERENCES reminder_steps (id),
    CHECK ((outcome IS NULL) = (recorded_at IS NULL))
);
CREATE INDEX call_tasks_invoice ON call_tasks (invoice_id);
CREATE INDEX call_tasks_expiring ON call_tasks (expires_at) WHERE outcome IS NULL;

-- The address a permanent SMTP refusal (5xx) was last received for. The customer's email is
-- known not to work while it is still this address: its email steps fall back.
ALTER TABLE customers ADD COLUMN bounced_email text;
ALTER TABLE customers ADD COLUMN bounced_at timestamptz;
ALTER TABLE customers ADD COLUMN bounce_reason text;

-- Default privileges of migration ...0002 cover the new table when the same user migrates;
-- granted here as well in case another user runs this one.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'relance_worker') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON call_tasks TO relance_worker;
    END IF;
END
$$;
