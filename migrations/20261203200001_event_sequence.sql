-- Every event about one invoice carries `sequence`: 1, 2, 3... in the order the transactions
-- that caused them committed, so that a consumer can put them in order whichever relay
-- published them first (docs/messages.md). The counter is per correlation id (the invoice
-- number). As the journal's links (migration ...0006), the number is given at COMMIT by a
-- deferred trigger: an invoice's counter is locked only during the commit, after the journal's
-- heads, all in one order, so it cannot take part in a deadlock with the row locks services
-- hold, and two transactions about one invoice get their numbers in their commit order.
CREATE TABLE event_sequences (
    correlation_id text PRIMARY KEY,
    last_sequence  bigint NOT NULL
);

-- Rows written before this migration read 0 (published without a sequence); new rows are
-- NULL until their transaction commits. (A default added then dropped: no table rewrite.)
ALTER TABLE outbox ADD COLUMN sequence bigint DEFAULT 0;
ALTER TABLE outbox ALTER COLUMN sequence DROP DEFAULT;
CREATE INDEX outbox_unsequenced ON outbox (id) WHERE sequence IS NULL AND destination = 'events';

-- Numbers every event of the current transaction still without one, invoice by invoice in
-- name order, events of an invoice in id order, and writes the number into the body. Only
-- this transaction's events are unnumbered: another's are uncommitted, committed ones numbered.
CREATE FUNCTION outbox_sequence_pending() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    key      text;
    last_seq bigint;
    event    record;
BEGIN
    -- The journal's heads first: every committing transaction locks heads, then counters.
    PERFORM journal_link_pending();
    FOR key IN
        SELECT DISTINCT correlation_id FROM outbox
        WHERE sequence IS NULL AND destination = 'events' ORDER BY 1
    LOOP
        INSERT INTO event_sequences (correlation_id, last_sequence) VALUES (key, 0)
        ON CONFLICT (correlation_id) DO NOTHING;
        SELECT last_sequence INTO last_seq FROM event_sequences WHERE correlation_id = key FOR UPDATE;
        FOR event IN
            SELECT id FROM outbox
            WHERE sequence IS NULL AND destination = 'events' AND correlation_id = key
            ORDER BY id
        LOOP
            last_seq := last_seq + 1;
            UPDATE outbox SET sequence = last_seq,
                payload = CASE WHEN jsonb_typeof(payload) = 'object'
                               THEN jsonb_set(payload, '{sequence}', to_jsonb(last_seq))
                               ELSE payload END
            WHERE id = event.id;
        END LOOP;
        UPDATE event_sequences SET last_sequence = last_seq WHERE correlation_id = key;
    END LOOP;
END
$$;

CREATE FUNCTION outbox_sequence_at_commit() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    -- The first event's trigger numbers the whole transaction; the others find theirs done.
    IF EXISTS (SELECT 1 FROM outbox WHERE id = NEW.id AND sequence IS NULL) THEN
        PERFORM outbox_sequence_pending();
    END IF;
    RETURN NULL;
END
$$;

REVOKE EXECUTE ON FUNCTION outbox_sequence_pending() FROM PUBLIC;

CREATE CONSTRAINT TRIGGER outbox_sequence
    AFTER INSERT ON outbox
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.destination = 'events')
    EXECUTE FUNCTION outbox_sequence_at_commit();

-- Workers read the counters; only the trigger (running as the owner) writes them.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'relance_worker') THEN
        REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON event_sequences FROM relance_worker;
        GRANT SELECT ON event_sequences TO relance_worker;
    END IF;
END
$$;
