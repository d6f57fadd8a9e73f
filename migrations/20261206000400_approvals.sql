-- Approval before formal steps: a step the policy (or the customer) marks for approval does
-- not go out when it falls due. The scheduler sets it `awaiting_approval` and opens an
-- approval request holding a preview of what would be sent; the accounts team grants it
-- (`approval.granted`: the step is pending again and goes out) or rejects it
-- (`approval.rejected`: the step is skipped with the reason). A request nobody decides in
-- time (the policy's `[approvals] expires_after_days`) expires: the step is skipped. A
-- payment, a closure or a pause treats a waiting step like any pending one.
ALTER TABLE reminder_steps DROP CONSTRAINT reminder_steps_status_check;
ALTER TABLE reminder_steps ADD CONSTRAINT reminder_steps_status_check
    CHECK (status IN ('pending', 'queued', 'rendered', 'deferred', 'sending', 'sent', 'skipped', 'cancelled',
                      'failed', 'awaiting_outcome', 'completed', 'expired', 'ambiguous', 'awaiting_approval'));

-- One row per time a step waited for approval; the decision stays here as proof.
CREATE TABLE approval_requests (
    id           uuid PRIMARY KEY,
    step_id      uuid NOT NULL REFERENCES reminder_steps (id),
    invoice_id   uuid NOT NULL REFERENCES invoices (id),
    requested_at timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    -- What the step will say: template, channel, tone, balance, interest, indemnity...
    preview      jsonb NOT NULL,
    decision     text CHECK (decision IN ('granted', 'rejected', 'expired', 'withdrawn')),
    decided_by   text,
    reason       text,
    -- The approval.granted / approval.rejected message that decided it.
    event_id     text,
    decided_at   timestamptz,
    CHECK ((decision IS NULL) = (decided_at IS NULL))
);
-- At most one open request per step.
CREATE UNIQUE INDEX approval_requests_open ON approval_requests (step_id) WHERE decision IS NULL;
CREATE INDEX approval_requests_expiring ON approval_requests (expires_at) WHERE decision IS NULL;
CREATE INDEX approval_requests_invoice ON approval_requests (invoice_id);

-- A customer whose every reminder waits for approval (Odoo's "manual" follow-up); NULL: the
-- policy decides.
ALTER TABLE customers ADD COLUMN approval text CHECK (approval IN ('manual', 'auto'));

-- A step waiting for approval is not final: its sequence is not over (the hand-off waits).
DROP TRIGGER sequence_ending_note ON reminder_steps;
CREATE TRIGGER sequence_ending_note
    AFTER UPDATE OF status ON reminder_steps
    FOR EACH ROW
    WHEN (NEW.kind = 'reminder' AND OLD.status IS DISTINCT FROM NEW.status
          AND NEW.status NOT IN ('pending', 'queued', 'rendered', 'deferred', 'sending', 'awaiting_outcome',
                                 'awaiting_approval'))
    EXECUTE FUNCTION sequence_ending_note();

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'relance_worker') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON approval_requests TO relance_worker;
    END IF;
END
$$;
