-- Version 2: what the circuit breaker remembers of each flag (see flagtower_core::breaker).
-- NULL: nothing scheduled.
ALTER TABLE flags
    ADD COLUMN breaker_since    timestamptz NOT NULL DEFAULT 'epoch',
    ADD COLUMN recovery_due_at  timestamptz,
    ADD COLUMN next_step_due_at timestamptz;
