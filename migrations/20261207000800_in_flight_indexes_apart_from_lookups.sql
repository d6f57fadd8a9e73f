-- Every update of a step by its id also checks its status (`WHERE id = $1 AND status =
-- 'sending' ...`). Such a status implies the predicate of the partial index of steps in
-- flight (and `deferred` that of the deferred steps), so the planner may scan that index
-- instead of the primary key: it does whenever the statistics, taken when few steps were in
-- flight, call it nearly empty. Under load it is not: on a 1,000,000-invoice ledger with
-- 20,000 reminders due at once, each stage update, result and grouped-step read walked some
-- 10,000 index entries (40 ms a statement instead of 0.1; `relance-bench pipeline
-- --due-every`). Both indexes now also require `grouped_into IS NULL`, which the lease sweep
-- (their one reader) states and no lookup by id does: such a lookup cannot use them, whatever
-- the statistics say.
DROP INDEX reminder_steps_in_flight;
CREATE INDEX reminder_steps_in_flight ON reminder_steps (status_changed_at)
    WHERE status IN ('queued', 'rendered', 'sending') AND grouped_into IS NULL;

DROP INDEX reminder_steps_deferred;
CREATE INDEX reminder_steps_deferred ON reminder_steps (retry_wall_at)
    WHERE status = 'deferred' AND grouped_into IS NULL;
