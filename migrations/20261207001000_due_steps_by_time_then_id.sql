-- The emission claim reads the due steps from a cursor, (due time, id) after the last step a
-- pass's earlier claims took (shared/storage/src/steps.rs, `ClaimCursor`), instead of from the
-- start of the index each time: the steps those claims emitted leave `pending`, but their old
-- index entries stay until no snapshot can see them, and every claim of the pass walked them.
-- The index of unheld pending steps gains the id, so that the cursor is one seek.
CREATE INDEX reminder_steps_due_unheld_by_id ON reminder_steps (due_at, id) WHERE status = 'pending' AND NOT held;
DROP INDEX reminder_steps_due_unheld;
