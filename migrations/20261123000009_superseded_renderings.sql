-- Grouped messages re-rendered before delivery, and renderings kept as proof.
--
-- A grouped message lists the customer's other overdue invoices (the steps that joined it):
-- which ones it listed is kept with the rendering, so that the sender can tell, right before
-- delivering, that one of them was paid, closed or paused since, and have it rendered again.
ALTER TABLE rendered_messages ADD COLUMN grouped_steps uuid[] NOT NULL DEFAULT '{}';

-- A rendering replaced before it was delivered (a pause took its step back, a grouped message
-- lost an invoice) is moved here rather than deleted: journal entries recorded its hash, and
-- the proof shows what was rendered and not sent.
CREATE TABLE superseded_renderings (
    id              bigserial PRIMARY KEY,
    step_id         uuid NOT NULL REFERENCES reminder_steps (id),
    channel         text NOT NULL,
    message_id      text NOT NULL,
    recipients      text[] NOT NULL,
    cc              text[] NOT NULL,
    subject         text NOT NULL,
    body_text       text NOT NULL,
    body_html       text,
    attach_invoice  boolean NOT NULL,
    rendered_at     timestamptz NOT NULL,
    document        bytea,
    document_sha256 text,
    grouped_steps   uuid[] NOT NULL,
    superseded_at   timestamptz NOT NULL,
    reason          text NOT NULL
);
CREATE INDEX superseded_renderings_step ON superseded_renderings (step_id);

-- Default privileges of migration ...0002 cover the new table when the same user migrates;
-- granted here as well in case another user runs this one. Rows are evidence: the workers
-- add them, never change or remove them.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'relance_worker') THEN
        GRANT SELECT, INSERT ON superseded_renderings TO relance_worker;
        REVOKE UPDATE, DELETE ON superseded_renderings FROM relance_worker;
        GRANT USAGE, SELECT ON SEQUENCE superseded_renderings_id_seq TO relance_worker;
    END IF;
END
$$;
