-- Payment plans (échéancier): a customer agrees to pay one or several of its invoices in
-- instalments. While a plan is `active`, each of its invoices has a pause of kind `plan`
-- (its own reminders are held, as for a promise) and the plan's own notes go out instead:
-- steps of kind `plan` (a note before each instalment, reminders after a missed one), dated
-- from each instalment's own due date. A payment on a plan's invoice is allocated to the
-- instalments in order (`paid`). Every instalment paid: `completed`; one unpaid past its
-- `breaks_at` (its due date plus the policy's grace days): `broken`, and the invoices' own
-- sequence resumes.
CREATE TABLE payment_plans (
    id           uuid PRIMARY KEY,
    -- The plan's id in the creditor's systems.
    plan_ref     text NOT NULL UNIQUE,
    customer_id  text NOT NULL REFERENCES customers (id),
    currency     char(3) NOT NULL,
    status       text NOT NULL CHECK (status IN ('active', 'completed', 'broken')),
    note         text,
    grace_days   integer NOT NULL CHECK (grace_days >= 0),
    -- The inbound message that brought it.
    event_id     text NOT NULL,
    agreed_at    timestamptz NOT NULL,
    ended_at     timestamptz,
    end_reason   text,
    CHECK ((status = 'active') = (ended_at IS NULL))
);

CREATE TABLE payment_plan_invoices (
    plan_id     uuid NOT NULL REFERENCES payment_plans (id),
    invoice_id  uuid NOT NULL REFERENCES invoices (id),
    -- The invoice's order in the plan (the first one carries the plan's notes).
    position    integer NOT NULL,
    -- Its balance when the plan was agreed.
    balance     numeric(20, 4) NOT NULL,
    PRIMARY KEY (plan_id, invoice_id)
);
CREATE INDEX payment_plan_invoices_by_invoice ON payment_plan_invoices (invoice_id);

CREATE TABLE payment_plan_instalments (
    plan_id    uuid NOT NULL REFERENCES payment_plans (id),
    position   integer NOT NULL CHECK (position >= 1),
    due_on     date NOT NULL,
    amount     numeric(20, 4) NOT NULL CHECK (amount > 0),
    paid       numeric(20, 4) NOT NULL DEFAULT 0 CHECK (paid >= 0 AND paid <= amount),
    paid_at    timestamptz,
    -- When, still unpaid, it breaks the plan (the start of the day after the grace, local).
    breaks_at  timestamptz NOT NULL,
    PRIMARY KEY (plan_id, position)
);
-- The sweep that breaks plans: unpaid instalments of active plans by when they break.
CREATE INDEX payment_plan_instalments_breaking ON payment_plan_instalments (breaks_at) WHERE paid < amount;

-- Which plan a note of kind `plan` belongs to, and which instalment it is about.
ALTER TABLE reminder_steps ADD COLUMN plan_id uuid REFERENCES payment_plans (id);
ALTER TABLE reminder_steps ADD COLUMN plan_instalment integer;
CREATE INDEX reminder_steps_plan_pending ON reminder_steps (due_at) WHERE kind = 'plan' AND status = 'pending';

ALTER TABLE reminder_steps DROP CONSTRAINT reminder_steps_kind_check;
ALTER TABLE reminder_steps ADD CONSTRAINT reminder_steps_kind_check
    CHECK (kind IN ('reminder', 'thanks', 'recap', 'plan'));
ALTER TABLE reminder_steps ADD CONSTRAINT reminder_steps_plan_note
    CHECK ((kind = 'plan') = (plan_id IS NOT NULL AND plan_instalment IS NOT NULL));

ALTER TABLE invoice_pauses DROP CONSTRAINT invoice_pauses_kind_check;
ALTER TABLE invoice_pauses ADD CONSTRAINT invoice_pauses_kind_check
    CHECK (kind IN ('promise', 'dispute', 'suspension', 'manual', 'plan'));

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'relance_worker') THEN
        GRANT SELECT, INSERT, UPDATE ON payment_plans, payment_plan_invoices, payment_plan_instalments
            TO relance_worker;
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'relance_console') THEN
        GRANT SELECT ON payment_plans, payment_plan_invoices, payment_plan_instalments TO relance_console;
    END IF;
END
$$;
