-- What the accepted `invoice.issued` said (field path -> text), so that a later message for
-- the same invoice number can be told a true duplicate or a conflict. Invoices registered
-- before this column get their own fields only: what their customer's message said then is
-- not known any more.
ALTER TABLE invoices ADD COLUMN registered_facts jsonb;

UPDATE invoices SET registered_facts = jsonb_build_object(
    'invoice.amount', trim_scale(amount)::text,
    'invoice.currency', trim(currency),
    'invoice.issued_on', issued_on::text,
    'invoice.due_on', due_on::text,
    'invoice.payment_link', payment_link,
    'invoice.customer.id', customer_id
);
