-- A re-plan that removes an invoice's pending steps (the customer's segment now has fewer)
-- can end its sequence: what is left are steps already final. Only a step's change of status
-- noted a possible ending (migration ...20261204100001), so such an invoice never got its
-- `sequence_ended_at` and was never handed off. A removed reminder step is noted as well, by
-- the same function (the row's invoice: the new row's on update, the old one's on delete).
CREATE OR REPLACE FUNCTION sequence_ending_note() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    INSERT INTO sequence_endings (invoice_id)
    VALUES (CASE WHEN TG_OP = 'DELETE' THEN OLD.invoice_id ELSE NEW.invoice_id END);
    RETURN NULL;
END
$$;

CREATE TRIGGER sequence_ending_note_removed
    AFTER DELETE ON reminder_steps
    FOR EACH ROW
    WHEN (OLD.kind = 'reminder')
    EXECUTE FUNCTION sequence_ending_note();
