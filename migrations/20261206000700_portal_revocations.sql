-- The customer page (`relance run portal`): links revoked by `relance portal revoke`. A link
-- made at or before `revoked_at` for the invoice is refused; links made afterwards work.
CREATE TABLE portal_revocations (
    invoice_number text PRIMARY KEY,
    revoked_at timestamptz NOT NULL
);
