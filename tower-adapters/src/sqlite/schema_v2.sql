-- Version 2: what the circuit breaker remembers of each flag (see flagtower_core::breaker).
-- Times are milliseconds since the Unix epoch; NULL: nothing scheduled.
ALTER TABLE flags ADD COLUMN breaker_since INTEGER NOT NULL DEFAULT 0;
ALTER TABLE flags ADD COLUMN recovery_due_at INTEGER;
ALTER TABLE flags ADD COLUMN next_step_due_at INTEGER;
