-- Dead letters, kept: each message taken off the dead-letter queue becomes a row (acked only
-- once the row is committed), so operators can list, show, replay or discard it, and a
-- replayed or discarded one keeps its record.
CREATE TABLE dead_letters (
    id bigserial PRIMARY KEY,
    -- One row per dead-lettering, whoever drains it and however often the broker redelivers
    -- it: the `x-relance-dead-letter-id` header, or a hash of the message when it has none.
    delivery_key text NOT NULL UNIQUE,
    -- The queue whose consumer gave up on it; NULL when no queue was bound for its key.
    queue text,
    -- Where a replay publishes it: the exchange and routing key it was first published to.
    exchange text NOT NULL,
    routing_key text NOT NULL,
    reason text NOT NULL,
    message_id text,
    -- AMQP properties (message id, correlation id, type, timestamp, content type) and the
    -- headers as they were, death bookkeeping included; a replay leaves the latter out.
    properties jsonb NOT NULL,
    headers jsonb NOT NULL,
    body bytea NOT NULL,
    dead_lettered_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'replayed', 'discarded')),
    -- When this message is itself a replay, the record it replayed.
    replay_of bigint REFERENCES dead_letters (id),
    replayed_at timestamptz,
    discarded_at timestamptz,
    CHECK ((status = 'replayed') = (replayed_at IS NOT NULL)),
    CHECK ((status = 'discarded') = (discarded_at IS NOT NULL))
);

-- `relance dead-letters list` and the console's page: the pending ones, newest first.
CREATE INDEX dead_letters_by_status ON dead_letters (status, id DESC);

-- Default privileges of migration ...0002 cover the new table when the same user migrates;
-- granted here as well in case another user runs this one.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'relance_worker') THEN
        GRANT SELECT, INSERT, UPDATE ON dead_letters TO relance_worker;
        GRANT USAGE, SELECT ON SEQUENCE dead_letters_id_seq TO relance_worker;
    END IF;
END
$$;
