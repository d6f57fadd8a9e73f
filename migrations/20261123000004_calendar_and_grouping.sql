-- Planning: the customer's calendar, stale-update protection, and grouped reminders.

-- Where a customer is, for its holiday calendar (ISO 3166-1 country, ISO 3166-2 region), and
-- the time of the message that last set its details, so that an older message arriving late
-- does not overwrite a newer one.
ALTER TABLE customers ADD COLUMN country text NOT NULL DEFAULT 'FR';
ALTER TABLE customers ADD COLUMN region text;
ALTER TABLE customers ADD COLUMN details_as_of timestamptz;

-- Grouping: a reminder of one of the customer's overdue invoices that goes out inside the
-- message of another (the lead step), instead of a message of its own the same day.
ALTER TABLE reminder_steps ADD COLUMN grouped_into uuid REFERENCES reminder_steps (id);
CREATE INDEX reminder_steps_grouped ON reminder_steps (grouped_into) WHERE grouped_into IS NOT NULL;
