-- The collections console: a read-only role, and an index for each of its list queries.

-- The tracking table sorted by amount (largest first), read by keyset (amount, number).
CREATE INDEX IF NOT EXISTS invoices_by_amount ON invoices (amount, number);
-- One customer's invoices by due date (customer filter, customer page).
CREATE INDEX IF NOT EXISTS invoices_by_customer_due ON invoices (customer_id, due_on, number);
-- Sales per month for DSO by countback.
CREATE INDEX IF NOT EXISTS invoices_by_issue_date ON invoices (issued_on);
-- Step effectiveness: the reminders sent over a period.
CREATE INDEX IF NOT EXISTS reminder_steps_sent ON reminder_steps (emitted_at)
    WHERE kind = 'reminder' AND status = 'sent';

-- The role the console reads as (it sets it on each connection): SELECT only, on every
-- table, later ones included. Writes go through the queue contract, never through it.
-- Created only where the migrating user may, as relance_worker.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'relance_console')
       AND (SELECT rolcreaterole OR rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        BEGIN
            CREATE ROLE relance_console NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL; -- created meanwhile by a concurrent migration
        END;
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'relance_console') THEN
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO relance_console', current_database());
        GRANT USAGE ON SCHEMA public TO relance_console;
        GRANT SELECT ON ALL TABLES IN SCHEMA public TO relance_console;
        REVOKE ALL ON _sqlx_migrations FROM relance_console;
        ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO relance_console;
        -- The worker login may take the console's role (SET ROLE) to serve the console.
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'relance_worker') THEN
            GRANT relance_console TO relance_worker;
        END IF;
    END IF;
END
$$;
