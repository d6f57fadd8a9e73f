-- Linking a transaction's journal entries and numbering its events at commit (migrations
-- ...20261204100000 and ...20261207000600) took three statements per chain (its head locked,
-- its entry hashed, its head moved), and as many per invoice's event counter: a group commit
-- of a few reminders, or a scheduler batch of 200 invoices, ran them invoice after invoice.
-- Now the heads (and counters) of the transaction are locked in one statement, in name order,
-- and the first entry of every chain (the first event of every invoice) is linked (numbered)
-- with the heads moved in one statement more; only a chain with several entries in the same
-- transaction has its later entries linked one by one, as before.
--
-- The guarantees are unchanged: the same formula (docs/journal.md); heads and counters taken
-- at commit only, after every other lock the transaction holds, journal heads before event
-- counters, each set in name order: the missing ones created first (a transaction waiting to
-- create one holds none of the others yet), then all locked; entries of a chain in id order,
-- events of an invoice in id order; the entries checked `hash IS NULL AND content_sha256 IS
-- NOT NULL`. (Locking the existing heads before creating the missing ones could deadlock
-- three transactions while a head was being created: found in review, tested in
-- `journal_chain.rs`.)
-- `ORDER BY ... FOR UPDATE` locks rows in that order (the lock is taken above the sort).
--
-- Both functions plan their statements once per session (`plan_cache_mode =
-- force_generic_plan`), and only with index lookups and nested loops (the `enable_*` settings,
-- for these functions only). Their parameters are arrays of ids, for which PostgreSQL's
-- generic plan looked costlier than one made for the values at hand, so it planned every
-- statement again at every commit; and a plan kept once per session must not be one made
-- while the tables were empty (a sequential scan of the journal at every commit until the
-- next ANALYZE: measured, 8.2 ms per commit from an empty journal). Every statement here
-- looks rows up by their primary key (ids, chains, invoices), so the pinned plan is the
-- right one at any size. Measured with pgbench (a transaction of one entry and its event,
-- commit-time calls from pg_stat_statements): 0.55-0.58 ms before, 1.2-1.6 set-wise with a
-- plan made per call, 0.38-0.41 set-wise with pinned plans, from an empty journal too; a
-- transaction of four: 1.26-1.46, 1.40-1.56 and 0.74-0.80. As shipped (the missing heads
-- looked for before any is locked: one statement more), against the previous functions in the
-- same minutes: one entry 0.49-0.72 against 0.52-0.55 ms, four 0.74-0.88 against 1.26-1.55.

CREATE OR REPLACE FUNCTION journal_link_ids(ids bigint[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    SET plan_cache_mode = force_generic_plan
    SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off
AS $$
DECLARE
    chains     text[];
    entries    bigint;
    missing    text[];
    chain_name text;
    head_seq   bigint;
    head_hash  text;
    entry      record;
BEGIN
    IF ids IS NULL OR cardinality(ids) = 0 THEN
        RETURN;
    END IF;
    SELECT array_agg(DISTINCT COALESCE(invoice_number, '') ORDER BY COALESCE(invoice_number, '')), count(*)
    INTO chains, entries
    FROM journal
    WHERE id = ANY (ids) AND hash IS NULL AND content_sha256 IS NOT NULL;
    IF chains IS NULL THEN
        RETURN;
    END IF;

    -- The heads missing are created first, in name order, before any head is locked: a
    -- transaction waiting to create one (another creating it too) holds no head another
    -- waits for. Then every head is locked, in name order.
    SELECT array_agg(c ORDER BY c) INTO missing
    FROM unnest(chains) AS c
    WHERE NOT EXISTS (SELECT 1 FROM journal_heads h WHERE h.chain = c);
    IF missing IS NOT NULL THEN
        -- Inserted in the order the sort gives them.
        INSERT INTO journal_heads (chain, seq, hash, updated_at)
        SELECT c, 0, repeat('0', 64), clock_timestamp()
        FROM unnest(missing) AS c
        ORDER BY c
        ON CONFLICT (chain) DO NOTHING;
    END IF;
    PERFORM 1 FROM journal_heads WHERE chain = ANY (chains) ORDER BY chain FOR UPDATE;

    -- The first entry of every chain, linked to its head; the heads moved past them.
    WITH first AS (
        SELECT DISTINCT ON (COALESCE(invoice_number, ''))
               id, COALESCE(invoice_number, '') AS chain, content_sha256
        FROM journal
        WHERE id = ANY (ids) AND hash IS NULL AND content_sha256 IS NOT NULL
        ORDER BY COALESCE(invoice_number, ''), id
    ), chained AS (
        SELECT f.id, f.chain, h.seq + 1 AS seq, h.hash AS prev_hash,
               encode(sha256(convert_to(
                   format(E'relance-journal-link-v1\n%s\n%s\n%s\n%s', f.id, h.seq + 1, h.hash, f.content_sha256),
                   'UTF8')), 'hex') AS hash
        FROM first f JOIN journal_heads h ON h.chain = f.chain
    ), linked AS (
        UPDATE journal j SET seq = c.seq, prev_hash = c.prev_hash, hash = c.hash
        FROM chained c
        WHERE j.id = c.id
        RETURNING c.chain, c.seq, c.hash
    )
    UPDATE journal_heads h SET seq = l.seq, hash = l.hash, updated_at = clock_timestamp()
    FROM linked l
    WHERE h.chain = l.chain;

    IF entries = cardinality(chains) THEN
        RETURN; -- One entry per chain: all linked.
    END IF;
    -- The later entries of chains with several, one by one in (chain, id) order.
    FOR entry IN
        SELECT id, COALESCE(invoice_number, '') AS chain, content_sha256 FROM journal
        WHERE id = ANY (ids) AND hash IS NULL AND content_sha256 IS NOT NULL
        ORDER BY 2, 1
    LOOP
        IF chain_name IS DISTINCT FROM entry.chain THEN
            IF chain_name IS NOT NULL THEN
                UPDATE journal_heads SET seq = head_seq, hash = head_hash, updated_at = clock_timestamp()
                WHERE chain = chain_name;
            END IF;
            chain_name := entry.chain;
            SELECT seq, hash INTO head_seq, head_hash FROM journal_heads WHERE chain = chain_name;
        END IF;
        head_seq := head_seq + 1;
        UPDATE journal SET seq = head_seq, prev_hash = head_hash,
            hash = encode(sha256(convert_to(
                format(E'relance-journal-link-v1\n%s\n%s\n%s\n%s', entry.id, head_seq, head_hash, entry.content_sha256),
                'UTF8')), 'hex')
        WHERE id = entry.id
        RETURNING hash INTO head_hash;
    END LOOP;
    IF chain_name IS NOT NULL THEN
        UPDATE journal_heads SET seq = head_seq, hash = head_hash, updated_at = clock_timestamp()
        WHERE chain = chain_name;
    END IF;
END
$$;

REVOKE EXECUTE ON FUNCTION journal_link_ids(bigint[]) FROM PUBLIC;

-- Numbers the events this transaction inserted, after linking the journal (heads first, then
-- counters): the counters locked in one statement in name order, the first event of every
-- invoice numbered at once, the later ones one by one.
CREATE OR REPLACE FUNCTION outbox_sequence_pending() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    SET plan_cache_mode = force_generic_plan
    SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off
AS $$
DECLARE
    noted    text := NULLIF(current_setting('relance.outbox_pending', true), '');
    ids      bigint[];
    keys     text[];
    events   bigint;
    missing  text[];
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
    SELECT array_agg(DISTINCT correlation_id ORDER BY correlation_id), count(*)
    INTO keys, events
    FROM outbox
    WHERE id = ANY (ids) AND sequence IS NULL AND destination = 'events';
    IF keys IS NULL THEN
        RETURN;
    END IF;

    -- As for the heads: the missing counters created first, in name order, then every
    -- counter locked, in name order.
    SELECT array_agg(k ORDER BY k) INTO missing
    FROM unnest(keys) AS k
    WHERE NOT EXISTS (SELECT 1 FROM event_sequences s WHERE s.correlation_id = k);
    IF missing IS NOT NULL THEN
        INSERT INTO event_sequences (correlation_id, last_sequence)
        SELECT k, 0
        FROM unnest(missing) AS k
        ORDER BY k
        ON CONFLICT (correlation_id) DO NOTHING;
    END IF;
    PERFORM 1 FROM event_sequences WHERE correlation_id = ANY (keys) ORDER BY correlation_id FOR UPDATE;

    WITH first AS (
        SELECT DISTINCT ON (correlation_id) id, correlation_id
        FROM outbox
        WHERE id = ANY (ids) AND sequence IS NULL AND destination = 'events'
        ORDER BY correlation_id, id
    ), numbered AS (
        UPDATE outbox o SET sequence = s.last_sequence + 1,
            payload = CASE WHEN jsonb_typeof(o.payload) = 'object'
                           THEN jsonb_set(o.payload, '{sequence}', to_jsonb(s.last_sequence + 1))
                           ELSE o.payload END
        FROM first f JOIN event_sequences s ON s.correlation_id = f.correlation_id
        WHERE o.id = f.id
        RETURNING f.correlation_id, o.sequence
    )
    UPDATE event_sequences s SET last_sequence = n.sequence
    FROM numbered n
    WHERE s.correlation_id = n.correlation_id;

    IF events = cardinality(keys) THEN
        RETURN; -- One event per invoice: all numbered.
    END IF;
    FOR key IN
        SELECT DISTINCT correlation_id FROM outbox
        WHERE id = ANY (ids) AND sequence IS NULL AND destination = 'events' ORDER BY 1
    LOOP
        SELECT last_sequence INTO last_seq FROM event_sequences WHERE correlation_id = key;
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

REVOKE EXECUTE ON FUNCTION outbox_sequence_pending() FROM PUBLIC;
