-- `relance invoices` pages through invoices by (due date, number).
CREATE INDEX invoices_by_due_date ON invoices (due_on, number);
