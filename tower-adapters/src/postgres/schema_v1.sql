-- Tower's PostgreSQL schema, version 1.
-- Percentages are integer tenths (0-1000); times are timestamptz (Tower writes milliseconds).

CREATE TABLE apps (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    title       text        NOT NULL,
    -- Unicode lowercase of the title, computed by flagtower-core (Title::key).
    title_key   text        NOT NULL,
    -- Bumped in the same transaction as every change of the app's ruleset.
    revision    bigint      NOT NULL DEFAULT 0 CHECK (revision >= 0),
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    -- Apps are soft-deleted: their id, revision and log entries outlive them.
    deleted_at  timestamptz
);
CREATE UNIQUE INDEX apps_live_title ON apps (title_key) WHERE deleted_at IS NULL;

CREATE TABLE flags (
    id                         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id                     bigint      NOT NULL REFERENCES apps (id),
    title                      text        NOT NULL,
    title_key                  text        NOT NULL,
    description                text        NOT NULL,
    state                      text        NOT NULL CHECK (state IN ('off', 'on', 'recovering')),
    rollout_tenths             smallint    NOT NULL CHECK (rollout_tenths BETWEEN 0 AND 1000),
    white_listed_users         text        NOT NULL,
    error_threshold_tenths     smallint    NOT NULL CHECK (error_threshold_tenths BETWEEN 0 AND 1000),
    is_recoverable             boolean     NOT NULL,
    recovery_tenths            smallint    NOT NULL CHECK (recovery_tenths BETWEEN 0 AND 1000),
    recovery_delay_ms          integer     NOT NULL CHECK (recovery_delay_ms >= 100),
    initial_recovery_tenths    smallint    NOT NULL CHECK (initial_recovery_tenths BETWEEN 0 AND 1000),
    recovery_rate_ms           integer     NOT NULL CHECK (recovery_rate_ms >= 100),
    recovery_increment_tenths  smallint    NOT NULL CHECK (recovery_increment_tenths BETWEEN 1 AND 1000),
    recovery_profile           text        NOT NULL CHECK (recovery_profile IN ('linear', 'exponential')),
    webhooks                   text        NOT NULL,
    created_at                 timestamptz NOT NULL,
    updated_at                 timestamptz NOT NULL
);
-- Also the index of "flags by app" (its leading column).
CREATE UNIQUE INDEX flags_app_title ON flags (app_id, title_key);
CREATE INDEX flags_by_app ON flags (app_id, id);

-- Append-only. No foreign key to flags: entries outlive the flags they describe.
CREATE TABLE logs (
    id                bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    flag_id           bigint      NOT NULL,
    app_id            bigint      NOT NULL REFERENCES apps (id),
    action_type       text        NOT NULL,
    flag_title        text        NOT NULL,
    flag_description  text        NOT NULL,
    created_at        timestamptz NOT NULL
);
CREATE INDEX logs_by_app ON logs (app_id, id);
CREATE INDEX logs_by_flag ON logs (flag_id, id);

-- One row per committed ruleset change not yet accepted by the publisher: a row's existence is
-- its state (pending), so "outbox by state" is this index.
CREATE TABLE outbox (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id      bigint      NOT NULL REFERENCES apps (id),
    revision    bigint      NOT NULL,
    origin      text        NOT NULL CHECK (origin IN ('manual', 'circuit')),
    created_at  timestamptz NOT NULL
);
CREATE INDEX outbox_pending ON outbox (app_id, revision);

CREATE TABLE sdk_key (
    singleton   smallint    PRIMARY KEY CHECK (singleton = 1),
    id          text        NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);
