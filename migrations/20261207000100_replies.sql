-- Replies, bounces and acknowledgements read from the reply-to mailbox (`relance run replies`).
--   reply   a pause opened by a customer's reply when the policy says so (`[replies]
--           pause_on_reply`); ends when the reply is marked handled (`reply.handled`).
ALTER TABLE invoice_pauses DROP CONSTRAINT invoice_pauses_kind_check;
ALTER TABLE invoice_pauses ADD CONSTRAINT invoice_pauses_kind_check
    CHECK (kind IN ('promise', 'dispute', 'suspension', 'manual', 'plan', 'reply'));

-- Every mail the reader took from the mailbox, once: its key is the mail's Message-ID (or,
-- without one, the SHA-256 of its bytes), so a second copy of the reader, a second run or a
-- second copy of the mail is recorded nothing more. Committed before the mail is flagged.
CREATE TABLE mailbox_messages (
    mail_key      text PRIMARY KEY,
    mailbox       text NOT NULL,
    uid_validity  bigint NOT NULL,
    uid           bigint NOT NULL,
    sha256        text NOT NULL,
    -- reply | bounce | acknowledgement | unmatched | ignored
    outcome       text NOT NULL CHECK (outcome IN ('reply', 'bounce', 'acknowledgement', 'unmatched', 'ignored')),
    invoice_id    uuid REFERENCES invoices (id),
    processed_at  timestamptz NOT NULL
);
CREATE UNIQUE INDEX mailbox_messages_uid ON mailbox_messages (mailbox, uid_validity, uid);

-- The customers' replies matched to an invoice, until someone handles them.
CREATE TABLE mail_replies (
    id            uuid PRIMARY KEY,
    invoice_id    uuid NOT NULL REFERENCES invoices (id),
    step_id       uuid,
    mail_key      text NOT NULL REFERENCES mailbox_messages (mail_key),
    from_address  text NOT NULL,
    subject       text NOT NULL,
    sent_at       timestamptz,
    excerpt       text NOT NULL,
    sha256        text NOT NULL,
    received_at   timestamptz NOT NULL,
    pauses        boolean NOT NULL,
    handled_at    timestamptz,
    handled_note  text,
    UNIQUE (mail_key, invoice_id)
);
CREATE INDEX mail_replies_open ON mail_replies (invoice_id) WHERE handled_at IS NULL;

-- Acknowledgements of receipt: one per invoice and source message (a page click, an MDN).
CREATE TABLE receipt_acknowledgements (
    invoice_id       uuid NOT NULL REFERENCES invoices (id),
    source           text NOT NULL,
    source_id        text NOT NULL,
    acknowledged_at  timestamptz NOT NULL,
    recorded_at      timestamptz NOT NULL,
    PRIMARY KEY (invoice_id, source_id)
);

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'relance_worker') THEN
        GRANT SELECT, INSERT, UPDATE ON mailbox_messages, mail_replies, receipt_acknowledgements TO relance_worker;
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'relance_console') THEN
        GRANT SELECT ON mailbox_messages, mail_replies, receipt_acknowledgements TO relance_console;
    END IF;
END
$$;

-- Replies are matched by the Message-ID relance gave each message.
CREATE INDEX rendered_messages_message_id ON rendered_messages (message_id);
