-- A policy and templates per creditor (docs/policy.md#a-policy-per-creditor): the named
-- policy its invoices follow (a file of RELANCE_POLICY_DIR) and its own template folder
-- (under RELANCE_CREDITOR_TEMPLATE_DIR). NULL: the deployment's default.
ALTER TABLE creditors ADD COLUMN policy text, ADD COLUMN templates text;
