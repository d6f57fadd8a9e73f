-- Hand-off without scanning the ledger. The hand-off sweep looked at every open overdue
-- invoice and probed its customer and steps on every pass (9M buffer accesses at 1M
-- invoices). Now an invoice carries `sequence_ended_at`: when the last reminder step of its
-- sequence (highest position) reached its final status, set once every reminder step of the
-- invoice is final (NULL while one is still on its way, or for a sequence that is not over).
-- A partial index holds only the open invoices whose sequence is over: what the sweep can act
-- on. The sweep still checks every rule of the hand-off on the rows the index gives it, so a
-- stale value can only cost a probe, never hand off an invoice early.
--
-- Who sets it: a step's transition must not lock its invoice row (the payments listener holds
-- that row FOR UPDATE while it waits for the steps; a sender records its result holding the
-- step), so the transition only appends the invoice's id to `sequence_endings` (insert-only,
-- nothing to wait for), and the hand-off sweep folds those rows into `sequence_ended_at`
-- before it claims, taking each invoice's lock with SKIP LOCKED (a row whose invoice is busy
-- stays for the next pass).
ALTER TABLE invoices ADD COLUMN sequence_ended_at timestamptz;

CREATE TABLE sequence_endings (
    id         bigserial PRIMARY KEY,
    invoice_id uuid NOT NULL
);

-- A reminder step left the statuses of a sequence on its way: its sequence may be over.
CREATE FUNCTION sequence_ending_note() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    INSERT INTO sequence_endings (invoice_id) VALUES (NEW.invoice_id);
    RETURN NULL;
END
$$;

CREATE TRIGGER sequence_ending_note
    AFTER UPDATE OF status ON reminder_steps
    FOR EACH ROW
    WHEN (NEW.kind = 'reminder' AND OLD.status IS DISTINCT FROM NEW.status
          AND NEW.status NOT IN ('pending', 'queued', 'rendered', 'deferred', 'sending', 'awaiting_outcome'))
    EXECUTE FUNCTION sequence_ending_note();

-- What the sweep can act on: open invoices whose sequence is over, in the order it claims them
-- (so that a batch stops at its limit even when thousands fall due together).
CREATE INDEX invoices_sequence_ended ON invoices (sequence_ended_at, id)
    WHERE status = 'open' AND sequence_ended_at IS NOT NULL;

-- Open call tasks, for their expiry (call_tasks_expiring also holds every task that expired
-- without an outcome, which grows with the ledger's history).
CREATE INDEX reminder_steps_awaiting_outcome ON reminder_steps (id) WHERE status = 'awaiting_outcome';

-- The sequences already over when this migration runs.
UPDATE invoices i SET sequence_ended_at = last.updated_at
FROM (SELECT DISTINCT ON (s.invoice_id) s.invoice_id, s.status, s.updated_at
      FROM reminder_steps s
      JOIN invoices o ON o.id = s.invoice_id AND o.status = 'open'
      WHERE s.kind = 'reminder'
      ORDER BY s.invoice_id, s.position DESC) last
WHERE i.id = last.invoice_id
  AND last.status IN ('sent', 'skipped', 'cancelled', 'failed', 'completed', 'expired')
  AND NOT EXISTS (SELECT 1 FROM reminder_steps o
                  WHERE o.invoice_id = i.id AND o.kind = 'reminder'
                    AND o.status IN ('pending', 'queued', 'rendered', 'deferred', 'sending', 'awaiting_outcome'));

-- Default privileges of migration ...0002 cover the new table when the same user migrates;
-- granted here as well in case another user runs this one.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'relance_worker') THEN
        GRANT SELECT, INSERT, DELETE ON sequence_endings TO relance_worker;
        GRANT USAGE, SELECT ON SEQUENCE sequence_endings_id_seq TO relance_worker;
    END IF;
END
$$;
