-- The journal becomes tamper-evident: every entry carries the hash of the previous entry of
-- its chain, and the hash of the document it refers to. One chain per invoice (the chain is
-- the invoice number, '' for an entry without one), so services appending about different
-- invoices never wait for each other. docs/journal.md gives the exact serialisation.
--
-- relance computes content_sha256 (and document_sha256) when it inserts an entry. The link
-- (seq, prev_hash, hash) is added at COMMIT by a deferred trigger: the chain's head is locked
-- only during the commit, after every other lock of the transaction, so it cannot take part
-- in a deadlock with the row locks services hold (a payment cancelling steps, a renderer...).
ALTER TABLE journal
    ADD COLUMN content_sha256  text,
    ADD COLUMN document_sha256 text,
    ADD COLUMN seq             bigint,
    ADD COLUMN prev_hash       text,
    ADD COLUMN hash            text;
-- A chain never forks: one entry per position.
CREATE UNIQUE INDEX journal_chain_seq ON journal ((COALESCE(invoice_number, '')), seq);
-- Entries of the committing transaction, waiting for their link.
CREATE INDEX journal_unlinked ON journal (id) WHERE hash IS NULL;

-- The last link of each chain: a chain cut short at its end no longer matches its head.
CREATE TABLE journal_heads (
    chain      text PRIMARY KEY,
    seq        bigint NOT NULL,
    hash       text NOT NULL,
    updated_at timestamptz NOT NULL
);

-- Entries written before this migration have no content hash yet: `relance migrate`
-- computes them (the canonical form is built in Rust) and links them, up to this id only,
-- so that it never vouches for a row inserted later behind relance's back.
CREATE TABLE journal_legacy (up_to_id bigint NOT NULL);
INSERT INTO journal_legacy SELECT COALESCE(max(id), 0) FROM journal;

-- Links every entry of the current transaction that has a content hash but no link yet,
-- chain by chain in name order (so two committing transactions lock heads in one order),
-- entries of a chain in id order. Only this transaction's unlinked entries are visible:
-- another transaction's are uncommitted, and committed ones are linked.
CREATE FUNCTION journal_link_pending() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    chain_name text;
    head_seq   bigint;
    head_hash  text;
    entry      record;
BEGIN
    FOR chain_name IN
        SELECT DISTINCT COALESCE(invoice_number, '') FROM journal
        WHERE hash IS NULL AND content_sha256 IS NOT NULL ORDER BY 1
    LOOP
        INSERT INTO journal_heads (chain, seq, hash, updated_at)
        VALUES (chain_name, 0, repeat('0', 64), clock_timestamp())
        ON CONFLICT (chain) DO NOTHING;
        SELECT seq, hash INTO head_seq, head_hash FROM journal_heads WHERE chain = chain_name FOR UPDATE;
        FOR entry IN
            SELECT id, content_sha256 FROM journal
            WHERE hash IS NULL AND content_sha256 IS NOT NULL AND COALESCE(invoice_number, '') = chain_name
            ORDER BY id
        LOOP
            head_seq := head_seq + 1;
            UPDATE journal SET seq = head_seq, prev_hash = head_hash,
                hash = encode(sha256(convert_to(
                    format(E'relance-journal-link-v1\n%s\n%s\n%s\n%s', entry.id, head_seq, head_hash, entry.content_sha256),
                    'UTF8')), 'hex')
            WHERE id = entry.id
            RETURNING hash INTO head_hash;
        END LOOP;
        UPDATE journal_heads SET seq = head_seq, hash = head_hash, updated_at = clock_timestamp()
        WHERE chain = chain_name;
    END LOOP;
END
$$;

CREATE FUNCTION journal_link_at_commit() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    -- The first entry's trigger links the whole transaction; the others find theirs done.
    IF EXISTS (SELECT 1 FROM journal WHERE id = NEW.id AND hash IS NULL) THEN
        PERFORM journal_link_pending();
    END IF;
    RETURN NULL;
END
$$;

REVOKE EXECUTE ON FUNCTION journal_link_pending() FROM PUBLIC;

CREATE CONSTRAINT TRIGGER journal_link
    AFTER INSERT ON journal
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION journal_link_at_commit();

-- The SHA-256 of the invoice PDF, kept by PostgreSQL itself (recomputed if the PDF changes):
-- documents attaching the PDF hash it without rereading megabytes at each journal entry.
ALTER TABLE invoices ADD COLUMN pdf_sha256 text GENERATED ALWAYS AS (encode(sha256(pdf), 'hex')) STORED;

-- Hand-off sweep: open invoices past their due date.
CREATE INDEX invoices_open_due ON invoices (due_on) WHERE status = 'open';

-- Workers read the heads; only the trigger (running as the owner) writes them. The journal
-- itself stays append-only for workers (migration ...0002).
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'relance_worker') THEN
        REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON journal_heads, journal_legacy FROM relance_worker;
        GRANT SELECT ON journal_heads, journal_legacy TO relance_worker;
    END IF;
END
$$;
