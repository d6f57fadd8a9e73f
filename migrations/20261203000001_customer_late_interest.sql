-- The late-payment rate agreed with a customer (percent a year), when it differs from the
-- creditor's terms of sale; NULL: the creditor's rate, else the statutory one.
ALTER TABLE customers ADD COLUMN late_interest_percent numeric(7, 4)
    CHECK (late_interest_percent IS NULL OR late_interest_percent BETWEEN 0 AND 100);
