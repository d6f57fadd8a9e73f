-- One trace per reminder, across retries: the W3C trace context (`traceparent`, `tracestate`)
-- of a step's emission, kept on the step so that the lease sweep, handing the step out again
-- long after, continues the reminder's trace instead of starting one under its own pass.
-- NULL for steps emitted before this column, or by a process without tracing.
ALTER TABLE reminder_steps ADD COLUMN trace_context jsonb;
