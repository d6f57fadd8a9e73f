-- The scheduler's emission claim reads the index of due, pending, unheld steps from its start
-- (reminder_steps_due_unheld_by_id). Every step that leaves it (emitted, held by a pause,
-- cancelled) leaves a dead entry there until a vacuum removes it, and each pass walks those
-- entries. PostgreSQL's default autovacuum waits for 20% of a table's rows to be dead: on a
-- ledger of 10M invoices (60M steps), 12M dead steps, and the pass reading tens of thousands
-- of index pages (measured: 17.7 ms at 10M against 7.5 ms at 1M, then 0.07 ms for the claim
-- once vacuumed; docs/scaling.md). Vacuuming after a count of dead steps that grows slowly
-- with the table keeps the pass's cost independent of the ledger's size: 50,000 dead steps
-- plus 0.2% of the table (170,000 at 60M steps). Operators may still override both per table.
ALTER TABLE reminder_steps SET (autovacuum_vacuum_scale_factor = 0.002, autovacuum_vacuum_threshold = 50000);
