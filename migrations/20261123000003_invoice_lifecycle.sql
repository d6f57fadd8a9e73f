-- The full set of invoice statuses, fixed once so that later features extend behaviour, not
-- the constraint:
--   open        being chased (a pause, if any, is recorded beside the status, not as one);
--   settled     paid in full;
--   closed      ended without payment by the creditor: credit note, write-off, or the
--               e-invoicing platform's "refused" status (status_reason says which);
--   handed_off  the sequence is over and the debt went to a collection agency or a lawyer.
ALTER TABLE invoices DROP CONSTRAINT invoices_status_check;
ALTER TABLE invoices ADD CONSTRAINT invoices_status_check
    CHECK (status IN ('open', 'settled', 'closed', 'handed_off'));
ALTER TABLE invoices ADD COLUMN status_reason text;
ALTER TABLE invoices ADD COLUMN status_changed_at timestamptz;
