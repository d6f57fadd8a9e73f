-- The emission claim walked, on every pass, the due pending steps of every paused invoice
-- (their old due times stay until the pause ends) to skip them one by one: 566 ms a pass at
-- 1M invoices with 4% paused, growing with the ledger (relance-bench, issue #14). A step of an
-- invoice under an active pause is now marked `held`, kept by triggers on the pauses and on
-- new steps (so no code path can forget it), and the claim reads an index that leaves held
-- steps out. The claim still checks the pauses itself: `held` only makes it fast.
ALTER TABLE reminder_steps ADD COLUMN held boolean NOT NULL DEFAULT false;

UPDATE reminder_steps s SET held = true
WHERE s.status = 'pending'
  AND EXISTS (SELECT 1 FROM invoice_pauses p WHERE p.invoice_id = s.invoice_id AND p.ended_at IS NULL);

CREATE INDEX reminder_steps_due_unheld ON reminder_steps (due_at) WHERE status = 'pending' AND NOT held;

-- A step planned for an invoice already paused is held from the start.
CREATE FUNCTION reminder_step_held_at_insert() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
BEGIN
    NEW.held := EXISTS (SELECT 1 FROM invoice_pauses p WHERE p.invoice_id = NEW.invoice_id AND p.ended_at IS NULL);
    RETURN NEW;
END
$$;

CREATE TRIGGER reminder_step_held_at_insert
    BEFORE INSERT ON reminder_steps
    FOR EACH ROW EXECUTE FUNCTION reminder_step_held_at_insert();

-- A pause opened, ended (or removed): the invoice's steps are held while any pause is active.
CREATE FUNCTION reminder_steps_held_by_pauses() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE
    invoice uuid := CASE WHEN TG_OP = 'DELETE' THEN OLD.invoice_id ELSE NEW.invoice_id END;
    paused boolean;
BEGIN
    paused := EXISTS (SELECT 1 FROM invoice_pauses p WHERE p.invoice_id = invoice AND p.ended_at IS NULL);
    UPDATE reminder_steps SET held = paused WHERE invoice_id = invoice AND held <> paused;
    RETURN NULL;
END
$$;

CREATE TRIGGER reminder_steps_held_by_pauses
    AFTER INSERT OR DELETE OR UPDATE OF ended_at, invoice_id ON invoice_pauses
    FOR EACH ROW EXECUTE FUNCTION reminder_steps_held_by_pauses();
