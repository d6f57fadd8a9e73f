-- Issue #17's gaps in approvals and the customer page.
--
-- 1. The hand-off waits for approval too (`[approvals] hand_off`, manual by default when the
--    policy has `[approvals]`): an approval request may be about the invoice's hand-off rather
--    than one of its steps (`subject = 'hand_off'`, no step).
-- 2. A held step is rendered before it waits: the request keeps the exact rendering it
--    previews (subject, text, HTML, the letter's PDF hash) and the figures it was rendered
--    with; the rendering itself stays in `rendered_messages` and is what approval sends.
ALTER TABLE approval_requests ALTER COLUMN step_id DROP NOT NULL;
ALTER TABLE approval_requests ADD COLUMN subject text NOT NULL DEFAULT 'step'
    CHECK (subject IN ('step', 'hand_off'));
ALTER TABLE approval_requests ADD CONSTRAINT approval_requests_subject_step
    CHECK ((subject = 'step') = (step_id IS NOT NULL));
-- At most one open hand-off request per invoice.
CREATE UNIQUE INDEX approval_requests_open_hand_off ON approval_requests (invoice_id)
    WHERE decision IS NULL AND subject = 'hand_off';

-- 5. A customer asks for a payment plan on the customer page (`payment_plan.requested`): the
--    sequence pauses while the accounts team decides (kind `plan_request`, no end date of its
--    own: lifted by the plan agreed, or by the team declining it). Every kind the latest
--    migrations allowed is kept.
ALTER TABLE invoice_pauses DROP CONSTRAINT invoice_pauses_kind_check;
ALTER TABLE invoice_pauses
    ADD CONSTRAINT invoice_pauses_kind_check
    CHECK (kind IN ('promise', 'dispute', 'suspension', 'manual', 'plan', 'reply', 'plan_request'));
