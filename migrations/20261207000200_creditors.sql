-- Several creditors in one deployment (docs/messages.md#creditors): each creditor's identity,
-- as `creditor.updated` last gave it. The environment's creditor (RELANCE_CREDITOR_*) is the
-- default one and is not stored here: an invoice whose `creditor_id` is NULL is its.
CREATE TABLE creditors (
    id text PRIMARY KEY,
    name text NOT NULL,
    legal_form text NOT NULL DEFAULT '',
    siren text NOT NULL DEFAULT '',
    siret text NOT NULL DEFAULT '',
    rcs_city text NOT NULL DEFAULT '',
    share_capital text NOT NULL DEFAULT '',
    address text NOT NULL,
    vat_number text NOT NULL DEFAULT '',
    iban text NOT NULL,
    bic text NOT NULL DEFAULT '',
    email text NOT NULL DEFAULT '',
    phone text NOT NULL DEFAULT '',
    letterhead text[] NOT NULL DEFAULT '{}',
    signature_fr text NOT NULL DEFAULT '',
    signature_en text NOT NULL DEFAULT '',
    signatory text NOT NULL DEFAULT '',
    signatory_title_fr text NOT NULL DEFAULT '',
    signatory_title_en text NOT NULL DEFAULT '',
    mail_from text NOT NULL DEFAULT '',
    reply_to text NOT NULL DEFAULT '',
    sms_sender text NOT NULL DEFAULT '',
    -- The `occurred_at` of the message these details come from: an older message arriving
    -- late changes nothing. `revision` counts the updates applied.
    details_as_of timestamptz NOT NULL,
    revision integer NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

-- The invoice's creditor; NULL: the default (the environment's).
ALTER TABLE invoices ADD COLUMN creditor_id text REFERENCES creditors (id);
CREATE INDEX invoices_by_creditor ON invoices (creditor_id) WHERE creditor_id IS NOT NULL;
