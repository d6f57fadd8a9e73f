-- Linking the journal (migration ...0006) and numbering events (...20261203200001) at commit
-- found the committing transaction's rows by scanning `hash IS NULL` / `sequence IS NULL`
-- through partial indexes whose entries are dead as soon as a row is linked: every commit
-- walked the dead tuples left by every commit since the last vacuum (half of the database's
-- time under load). Now each insert notes its rows' ids in a transaction-local setting, and
-- the commit-time link fetches exactly those rows by primary key.
--
-- The guarantees are unchanged: the link formula is the same (docs/journal.md), a transaction
-- locks its chains' heads (then its invoices' event counters) at commit only, in name order,
-- entries of a chain in id order, so concurrent transactions chain in their commit order and
-- never deadlock on these locks. The setting is transaction-local (`set_config(.., true)`),
-- so it is empty at the start of every transaction and reverts with a rolled-back savepoint;
-- the link keeps checking `hash IS NULL AND content_sha256 IS NOT NULL` on the rows it is
-- given, so a stray id can neither relink an entry nor vouch for one inserted without a hash.

-- Notes the ids of the rows a statement inserted (one setting per table).
CREATE FUNCTION journal_note_inserted() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE
    noted text := NULLIF(current_setting('relance.journal_pending', true), '');
    added text;
BEGIN
    SELECT string_agg(id::text, ',' ORDER BY id) INTO added FROM inserted;
    IF added IS NOT NULL THEN
        PERFORM set_config('relance.journal_pending', concat_ws(',', noted, added), true);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER journal_note_inserted
    AFTER INSERT ON journal
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION journal_note_inserted();

CREATE FUNCTION outbox_note_inserted() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE
    noted text := NULLIF(current_setting('relance.outbox_pending', true), '');
    added text;
BEGIN
    SELECT string_agg(id::text, ',' ORDER BY id) INTO added FROM inserted WHERE destination = 'events';
    IF added IS NOT NULL THEN
        PERFORM set_config('relance.outbox_pending', concat_ws(',', noted, added), true);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_note_inserted
    AFTER INSERT ON outbox
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_note_inserted();

-- Links the given entries that have a content hash and no link yet: chain by chain in name
-- order, entries of a chain in id order (the formula of migration ...0006).
CREATE FUNCTION journal_link_ids(ids bigint[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    chain_name text;
    head_seq   bigint;
    head_hash  text;
    entry      record;
BEGIN
    IF ids IS NULL OR cardinality(ids) = 0 THEN
        RETURN;
    END IF;
    FOR chain_name IN
        SELECT DISTINCT COALESCE(invoice_number, '') FROM journal
        WHERE id = ANY (ids) AND hash IS NULL AND content_sha256 IS NOT NULL ORDER BY 1
    LOOP
        INSERT INTO journal_heads (chain, seq, hash, updated_at)
        VALUES (chain_name, 0, repeat('0', 64), clock_timestamp())
        ON CONFLICT (chain) DO NOTHING;
        SELECT seq, hash INTO head_seq, head_hash FROM journal_heads WHERE chain = chain_name FOR UPDATE;
        FOR entry IN
            SELECT id, content_sha256 FROM journal
            WHERE id = ANY (ids) AND hash IS NULL AND content_sha256 IS NOT NULL
              AND COALESCE(invoice_number, '') = chain_name
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

REVOKE EXECUTE ON FUNCTION journal_link_ids(bigint[]) FROM PUBLIC;

-- Links the entries this transaction inserted (noted by journal_note_inserted).
CREATE OR REPLACE FUNCTION journal_link_pending() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    noted text := NULLIF(current_setting('relance.journal_pending', true), '');
BEGIN
    IF noted IS NULL THEN
        RETURN;
    END IF;
    PERFORM set_config('relance.journal_pending', '', true);
    PERFORM journal_link_ids(string_to_array(noted, ',')::bigint[]);
END
$$;

CREATE OR REPLACE FUNCTION journal_link_at_commit() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    -- The first entry's trigger links the whole transaction; the others find the note empty.
    PERFORM journal_link_pending();
    RETURN NULL;
END
$$;

-- Numbers the events this transaction inserted, invoice by invoice in name order, events of
-- an invoice in id order, after linking the journal (heads first, then counters).
CREATE OR REPLACE FUNCTION outbox_sequence_pending() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    noted    text := NULLIF(current_setting('relance.outbox_pending', true), '');
    ids      bigint[];
    key      text;
    last_seq bigint;
    event    record;
BEGIN
    PERFORM journal_link_pending();
    IF noted IS NULL THEN
        RETURN;
    END IF;
    PERFORM set_config('relance.outbox_pending', '', true);
    ids := string_to_array(noted, ',')::bigint[];
    FOR key IN
        SELECT DISTINCT correlation_id FROM outbox
        WHERE id = ANY (ids) AND sequence IS NULL AND destination = 'events' ORDER BY 1
    LOOP
        INSERT INTO event_sequences (correlation_id, last_sequence) VALUES (key, 0)
        ON CONFLICT (correlation_id) DO NOTHING;
        SELECT last_sequence INTO last_seq FROM event_sequences WHERE correlation_id = key FOR UPDATE;
        FOR event IN
            SELECT id FROM outbox
            WHERE id = ANY (ids) AND sequence IS NULL AND destination = 'events' AND correlation_id = key
            ORDER BY id
        LOOP
            last_seq := last_seq + 1;
            UPDATE outbox SET sequence = last_seq,
                payload = CASE WHEN jsonb_typeof(payload) = 'object'
                               THEN jsonb_set(payload, '{sequence}', to_jsonb(last_seq))
                               ELSE payload END
            WHERE id = event.id;
        END LOOP;
        UPDATE event_sequences SET last_sequence = last_seq WHERE correlation_id = key;
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION outbox_sequence_at_commit() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    -- The first event's trigger numbers the whole transaction; the others find the note empty.
    PERFORM outbox_sequence_pending();
    RETURN NULL;
END
$$;

-- The scanned indexes go; `relance migrate` still finds entries without a content hash
-- (written before ...0006) through a partial index that relance's own inserts never enter.
DROP INDEX journal_unlinked;
DROP INDEX outbox_unsequenced;
CREATE INDEX journal_unhashed ON journal (id) WHERE content_sha256 IS NULL;
