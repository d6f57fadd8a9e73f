-- Pauses and ends of the dunning sequence: promises to pay, disputes, credit notes,
-- write-offs and the e-invoicing platform's lifecycle statuses.

-- A pause holds an open invoice's sequence. It is recorded beside the invoice status (which
-- stays `open`): an invoice is paused while it has a pause with `ended_at IS NULL`.
--   promise     until `until` (the promised date plus the grace days), then resumes;
--   dispute     until resolved (dispute.resolved, or the platform's approved status);
--   suspension  the platform's "suspended" status, until "completed" or "approved".
CREATE TABLE invoice_pauses (
    id          uuid PRIMARY KEY,
    invoice_id  uuid NOT NULL REFERENCES invoices (id),
    kind        text NOT NULL CHECK (kind IN ('promise', 'dispute', 'suspension')),
    reason      text NOT NULL,
    promised_on date,
    -- When a promise's pause ends by itself; NULL for pauses that wait for a message.
    until       timestamptz,
    -- The inbound message that opened it (routing key and event id).
    source      text NOT NULL,
    event_id    text NOT NULL,
    started_at  timestamptz NOT NULL,
    ended_at    timestamptz,
    end_reason  text,
    CHECK ((kind = 'promise') = (promised_on IS NOT NULL AND until IS NOT NULL))
);
CREATE INDEX invoice_pauses_active ON invoice_pauses (invoice_id) WHERE ended_at IS NULL;
CREATE INDEX invoice_pauses_expiring ON invoice_pauses (until) WHERE ended_at IS NULL AND until IS NOT NULL;
-- At most one active pause of each kind per invoice: a new promise replaces the old one.
CREATE UNIQUE INDEX invoice_pauses_one_per_kind ON invoice_pauses (invoice_id, kind) WHERE ended_at IS NULL;

-- Credit notes lower what is owed without being payments: the reminders show the invoice
-- net of them, and a credit note for the whole invoice closes it.
CREATE TABLE credit_notes (
    id          text PRIMARY KEY,
    invoice_id  uuid NOT NULL REFERENCES invoices (id),
    amount      numeric(20, 4) NOT NULL CHECK (amount > 0),
    currency    char(3) NOT NULL,
    issued_on   date NOT NULL,
    reason      text,
    recorded_at timestamptz NOT NULL
);
CREATE INDEX credit_notes_invoice ON credit_notes (invoice_id);

-- Sum of the invoice's credit notes: balance = amount - payments - credited.
ALTER TABLE invoices ADD COLUMN credited numeric(20, 4) NOT NULL DEFAULT 0 CHECK (credited >= 0);

-- The worker role gets these tables through the default privileges of migration ...0002
-- when the same user migrates; granted here as well in case another user runs this one.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'relance_worker') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON invoice_pauses, credit_notes TO relance_worker;
    END IF;
END
$$;
