-- Tower's SQLite schema, version 1.
-- Times are milliseconds since the Unix epoch (UTC); percentages are integer tenths (0-1000).

CREATE TABLE apps (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    title       TEXT    NOT NULL,
    -- Unicode lowercase of the title, computed by flagtower-core (Title::key).
    title_key   TEXT    NOT NULL,
    -- Bumped in the same transaction as every change of the app's ruleset.
    revision    INTEGER NOT NULL DEFAULT 0 CHECK (revision >= 0),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    -- Apps are soft-deleted: their id, revision and log entries outlive them.
    deleted_at  INTEGER
);
CREATE UNIQUE INDEX apps_live_title ON apps (title_key) WHERE deleted_at IS NULL;

CREATE TABLE flags (
    id                         INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id                     INTEGER NOT NULL REFERENCES apps (id),
    title                      TEXT    NOT NULL,
    title_key                  TEXT    NOT NULL,
    description                TEXT    NOT NULL,
    state                      TEXT    NOT NULL CHECK (state IN ('off', 'on', 'recovering')),
    rollout_tenths             INTEGER NOT NULL CHECK (rollout_tenths BETWEEN 0 AND 1000),
    white_listed_users         TEXT    NOT NULL,
    error_threshold_tenths     INTEGER NOT NULL CHECK (error_threshold_tenths BETWEEN 0 AND 1000),
    is_recoverable             INTEGER NOT NULL CHECK (is_recoverable IN (0, 1)),
    recovery_tenths            INTEGER NOT NULL CHECK (recovery_tenths BETWEEN 0 AND 1000),
    recovery_delay_ms          INTEGER NOT NULL CHECK (recovery_delay_ms >= 100),
    initial_recovery_tenths    INTEGER NOT NULL CHECK (initial_recovery_tenths BETWEEN 0 AND 1000),
    recovery_rate_ms           INTEGER NOT NULL CHECK (recovery_rate_ms >= 100),
    recovery_increment_tenths  INTEGER NOT NULL CHECK (recovery_increment_tenths BETWEEN 1 AND 1000),
    recovery_profile           TEXT    NOT NULL CHECK (recovery_profile IN ('linear', 'exponential')),
    webhooks                   TEXT    NOT NULL,
    created_at                 INTEGER NOT NULL,
    updated_at                 INTEGER NOT NULL
);
CREATE UNIQUE INDEX flags_app_title ON flags (app_id, title_key);

-- Append-only. No foreign key to flags: entries outlive the flags they describe.
CREATE TABLE logs (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    flag_id           INTEGER NOT NULL,
    app_id            INTEGER NOT NULL REFERENCES apps (id),
    action_type       TEXT    NOT NULL,
    flag_title        TEXT    NOT NULL,
    flag_description  TEXT    NOT NULL,
    created_at        INTEGER NOT NULL
);
CREATE INDEX logs_by_app ON logs (app_id, id);
CREATE INDEX logs_by_flag ON logs (flag_id, id);

-- One row per committed ruleset change not yet accepted by the publisher.
CREATE TABLE outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id      INTEGER NOT NULL REFERENCES apps (id),
    revision    INTEGER NOT NULL,
    origin      TEXT    NOT NULL CHECK (origin IN ('manual', 'circuit')),
    created_at  INTEGER NOT NULL
);
CREATE INDEX outbox_by_app ON outbox (app_id, revision);

CREATE TABLE sdk_key (
    singleton   INTEGER PRIMARY KEY CHECK (singleton = 1),
    id          TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
