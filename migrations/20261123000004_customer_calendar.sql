-- Where a customer is, for its holiday calendar (ISO 3166-1 country, ISO 3166-2 region), and
-- the time of the message that last set its details, so that an older message arriving late
-- does not overwrite a newer one.
ALTER TABLE customers ADD COLUMN country text NOT NULL DEFAULT 'FR';
ALTER TABLE customers ADD COLUMN region text;
ALTER TABLE customers ADD COLUMN details_as_of timestamptz;
