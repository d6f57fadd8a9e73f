-- Leases: the wall-clock time a step entered its current status. A step left in queued,
-- rendered or sending for longer than the lease is picked up again by the scheduler's sweep.
ALTER TABLE reminder_steps ADD COLUMN status_changed_at timestamptz NOT NULL DEFAULT clock_timestamp();
CREATE INDEX reminder_steps_in_flight ON reminder_steps (status_changed_at)
    WHERE status IN ('queued', 'rendered', 'sending');

-- Wall-clock time a payment was committed, whatever the simulated clock says: proof that no
-- reminder left after it.
ALTER TABLE payments ADD COLUMN recorded_wall_at timestamptz NOT NULL DEFAULT clock_timestamp();

-- A simulated clock shared by service processes (RELANCE_CLOCK=database), for demos and
-- multi-process tests. One row at most.
CREATE TABLE simulated_clock (
    id  boolean PRIMARY KEY DEFAULT true CHECK (id),
    now timestamptz NOT NULL
);

-- The role workers run as: reads and writes rows, no DDL (migrations run separately, as the
-- owner). The journal is append-only for it. Created only where the migrating user may.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'relance_worker')
       AND (SELECT rolcreaterole OR rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        BEGIN
            CREATE ROLE relance_worker LOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL; -- created meanwhile by a concurrent migration
        END;
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'relance_worker') THEN
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO relance_worker', current_database());
        GRANT USAGE ON SCHEMA public TO relance_worker;
        GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO relance_worker;
        REVOKE UPDATE, DELETE ON journal FROM relance_worker;
        REVOKE ALL ON _sqlx_migrations FROM relance_worker;
        GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO relance_worker;
        -- Tables of later migrations too.
        ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO relance_worker;
        ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO relance_worker;
    END IF;
END
$$;
