-- The outbox relay is woken when messages are committed, instead of finding them at its next
-- poll: every statement adding outbox rows notifies `relance_outbox` (PostgreSQL delivers a
-- notification at commit, once per transaction, and never for a rolled-back one). The relay
-- still polls every RELANCE_OUTBOX_INTERVAL_MS, in case a notification is missed (its
-- listening connection lost).
CREATE FUNCTION outbox_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('relance_outbox', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_notify
    AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
