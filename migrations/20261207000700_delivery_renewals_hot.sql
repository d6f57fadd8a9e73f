-- A delivery in progress records its stages (`data_end_sent`, `answered`) and renews its
-- lease by updating its step. Each of these updates also set `status_changed_at`, which the
-- index of steps in flight (`reminder_steps_in_flight`) holds, so PostgreSQL could not make
-- them HOT: every one wrote a new entry in each of the table's indexes, two to four updates
-- per reminder. They now write `delivery_renewed_at`, which no index holds, and the lease
-- sweep reads a step's last sign of life as the later of the two (`status_changed_at` still
-- changes with the status: the index finds the candidates, the renewal is checked on them).
ALTER TABLE reminder_steps ADD COLUMN delivery_renewed_at timestamptz;

-- Room on each page for the new versions of its rows, so that the updates above can stay on
-- their page (HOT needs it). Applies to pages written from now on.
ALTER TABLE reminder_steps SET (fillfactor = 85);
