-- Tokens that expire and can be revoked; the audit log; a record of every sweep run.

ALTER TABLE api_tokens ADD COLUMN name TEXT;
ALTER TABLE api_tokens ADD COLUMN expires_at BIGINT;
ALTER TABLE api_tokens ADD COLUMN revoked_at BIGINT;
ALTER TABLE api_tokens ADD COLUMN last_used_at BIGINT;
UPDATE api_tokens SET name = (SELECT u.name FROM users u WHERE u.id = api_tokens.user_id);

-- Append-only: who did what to which object, when, under which request.
CREATE TABLE audit_log (
    id           INTEGER PRIMARY KEY,
    actor        TEXT NOT NULL,
    user_id      BIGINT REFERENCES users (id),
    action       TEXT NOT NULL,
    object_type  TEXT NOT NULL,
    object_id    TEXT,
    detail       TEXT NOT NULL,
    request_id   TEXT,
    created_at   BIGINT NOT NULL
);
CREATE INDEX audit_log_by_object ON audit_log (object_type, object_id, id);
CREATE INDEX audit_log_by_request ON audit_log (request_id) WHERE request_id IS NOT NULL;

CREATE TABLE sweep_runs (
    id               INTEGER PRIMARY KEY,
    trigger          TEXT NOT NULL CONSTRAINT sweep_runs_trigger_valid CHECK (trigger IN ('scheduler', 'cli', 'api', 'console')),
    actor            TEXT NOT NULL,
    dry_run          INTEGER NOT NULL CONSTRAINT sweep_runs_dry_run_flag CHECK (dry_run IN (0, 1)),
    timeout_minutes  BIGINT NOT NULL,
    cutoff           BIGINT NOT NULL,
    state            TEXT NOT NULL CONSTRAINT sweep_runs_state_valid CHECK (state IN ('running', 'finished', 'stopped')),
    started_at       BIGINT NOT NULL,
    heartbeat_at     BIGINT NOT NULL,
    finished_at      BIGINT,
    found            BIGINT NOT NULL DEFAULT 0,
    cancelled        BIGINT NOT NULL DEFAULT 0,
    would_cancel     BIGINT NOT NULL DEFAULT 0,
    skipped          BIGINT NOT NULL DEFAULT 0,
    errors           BIGINT NOT NULL DEFAULT 0,
    units_released   BIGINT NOT NULL DEFAULT 0,
    duration_ms      BIGINT NOT NULL DEFAULT 0,
    stopped_reason   TEXT,
    failures         TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX sweep_runs_by_start ON sweep_runs (started_at, id);

-- A late payment's refund, once staff settled it: the provider's reference of the refund.
ALTER TABLE payments ADD COLUMN refund_ref TEXT;

-- The per-customer pending-order limit counts these.
CREATE INDEX orders_pending_by_user ON orders (user_id) WHERE status = 'pending';
