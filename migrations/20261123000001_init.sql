-- The dunning ledger. The database is the truth; queue messages only notify committed changes.

CREATE TABLE customers (
    id             text PRIMARY KEY,              -- the id given by the invoicing system
    name           text NOT NULL,
    contact_name   text NOT NULL,
    email          text NOT NULL,
    phone          text,
    postal_address text,
    language       text NOT NULL CHECK (language IN ('fr', 'en')),
    timezone       text NOT NULL,
    risk           text NOT NULL CHECK (risk IN ('low', 'medium', 'high')),
    kind           text NOT NULL CHECK (kind IN ('business', 'consumer')),
    cc             text[] NOT NULL DEFAULT '{}',
    updated_at     timestamptz NOT NULL
);

CREATE TABLE invoices (
    id           uuid PRIMARY KEY,
    number       text NOT NULL UNIQUE,
    customer_id  text NOT NULL REFERENCES customers (id),
    amount       numeric(20, 4) NOT NULL CHECK (amount > 0),
    currency     char(3) NOT NULL,
    balance      numeric(20, 4) NOT NULL CHECK (balance >= 0),
    issued_on    date NOT NULL,
    due_on       date NOT NULL,
    payment_link text,
    pdf          bytea,
    status       text NOT NULL CHECK (status IN ('open', 'settled')),
    created_at   timestamptz NOT NULL,
    settled_at   timestamptz
);
CREATE INDEX invoices_customer ON invoices (customer_id);

-- One row per planned action. Status moves forward only:
-- pending -> queued -> rendered -> sending -> sent, or to skipped / cancelled / failed.
CREATE TABLE reminder_steps (
    id            uuid PRIMARY KEY,
    invoice_id    uuid NOT NULL REFERENCES invoices (id),
    name          text NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('reminder', 'thanks')),
    position      integer NOT NULL,
    channel       text NOT NULL,
    template      text NOT NULL,
    tone          text NOT NULL,
    due_at        timestamptz NOT NULL,
    status        text NOT NULL CHECK (status IN ('pending', 'queued', 'rendered', 'sending', 'sent', 'skipped', 'cancelled', 'failed')),
    status_reason text,
    emitted_at    timestamptz,
    -- The customer's local calendar day on which the step was emitted.
    emitted_on    date,
    delivery_proof text,
    updated_at    timestamptz NOT NULL,
    UNIQUE (invoice_id, name)
);
CREATE INDEX reminder_steps_due ON reminder_steps (due_at) WHERE status = 'pending';
CREATE INDEX reminder_steps_invoice ON reminder_steps (invoice_id);
-- The database itself refuses a second reminder for one invoice on one day.
CREATE UNIQUE INDEX reminder_steps_one_per_day ON reminder_steps (invoice_id, emitted_on)
    WHERE kind = 'reminder' AND emitted_on IS NOT NULL;

CREATE TABLE payments (
    id          text PRIMARY KEY,
    invoice_id  uuid NOT NULL REFERENCES invoices (id),
    amount      numeric(20, 4) NOT NULL CHECK (amount > 0),
    currency    char(3) NOT NULL,
    received_on date NOT NULL,
    recorded_at timestamptz NOT NULL
);
CREATE INDEX payments_invoice ON payments (invoice_id);

-- What the renderer produced for a step: the exact document that the sender delivers.
CREATE TABLE rendered_messages (
    step_id        uuid PRIMARY KEY REFERENCES reminder_steps (id),
    channel        text NOT NULL,
    message_id     text NOT NULL,
    recipients     text[] NOT NULL,
    cc             text[] NOT NULL DEFAULT '{}',
    subject        text NOT NULL,
    body_text      text NOT NULL,
    body_html      text,
    attach_invoice boolean NOT NULL,
    rendered_at    timestamptz NOT NULL
);

-- Append-only journal of every action, the creditor's proof of what happened when.
CREATE TABLE journal (
    id             bigserial PRIMARY KEY,
    at             timestamptz NOT NULL,
    invoice_number text,
    step_id        uuid,
    action         text NOT NULL,
    detail         jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX journal_invoice ON journal (invoice_number, id);

-- Inbox: message ids a consumer has applied, written in the same transaction as the effect.
CREATE TABLE processed_messages (
    consumer     text NOT NULL,
    message_id   text NOT NULL,
    processed_at timestamptz NOT NULL,
    PRIMARY KEY (consumer, message_id)
);

-- Transactional outbox: messages committed with the change that causes them, published by a relay.
CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    destination  text NOT NULL CHECK (destination IN ('jobs', 'events')),
    routing_key  text NOT NULL,
    message_id   uuid NOT NULL UNIQUE,
    correlation_id text NOT NULL,
    payload      jsonb NOT NULL,
    headers      jsonb NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL,
    published_at timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
