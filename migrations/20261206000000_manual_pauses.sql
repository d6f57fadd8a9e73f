-- Pauses by hand: the accounts team holds an invoice's reminders (`pause.requested`, from
-- `relance invoice pause` or the console) until it releases them (`resume.requested`).
--   manual  until a `resume.requested`; like a dispute, it has no end date of its own.
ALTER TABLE invoice_pauses DROP CONSTRAINT invoice_pauses_kind_check;
ALTER TABLE invoice_pauses
    ADD CONSTRAINT invoice_pauses_kind_check CHECK (kind IN ('promise', 'dispute', 'suspension', 'manual'));
