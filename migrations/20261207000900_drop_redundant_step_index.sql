-- `reminder_steps_invoice (invoice_id)` duplicated the leading column of the unique index
-- `reminder_steps_invoice_id_name_key (invoice_id, name)`, which serves every lookup by
-- invoice as well. It was not free: a status transition cannot be a HOT update (`status` is
-- in partial indexes' predicates), so each one (about four per reminder sent) wrote a new
-- entry into every index without a predicate, this one included; and it held an entry per
-- step, six million on a million-invoice ledger.
DROP INDEX IF EXISTS reminder_steps_invoice;
