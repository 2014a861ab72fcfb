-- Outbound events: the outbox (written in the same transaction as the change), webhook
-- endpoints (and the message broker, an endpoint of kind 'amqp'), their deliveries and
-- every attempt.

-- Numbers one order's events 1, 2, 3…; bumped under the order's row lock.
ALTER TABLE orders ADD COLUMN event_seq BIGINT NOT NULL DEFAULT 0;
-- Set when the payment reminder was emitted: at most once per order.
ALTER TABLE orders ADD COLUMN reminded_at BIGINT;
-- Serves the reminder job: unpaid orders not yet reminded, by age.
CREATE INDEX orders_pending_unreminded ON orders (created_at, id)
    WHERE status = 'pending' AND reminded_at IS NULL;

CREATE TABLE events (
    id          INTEGER PRIMARY KEY,
    event_id    TEXT NOT NULL CONSTRAINT events_event_id_unique UNIQUE,
    type        TEXT NOT NULL,
    order_id    BIGINT,
    product_id  BIGINT,
    seq         BIGINT,
    data        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
-- One order's events have distinct, gapless numbers.
CREATE UNIQUE INDEX events_order_seq ON events (order_id, seq) WHERE order_id IS NOT NULL;
CREATE INDEX events_by_type ON events (type, id);
CREATE INDEX events_by_created ON events (created_at, id);

CREATE TABLE webhook_endpoints (
    id                     INTEGER PRIMARY KEY,
    kind                   TEXT NOT NULL DEFAULT 'webhook' CONSTRAINT webhook_endpoints_kind_valid CHECK (kind IN ('webhook', 'amqp')),
    url                    TEXT NOT NULL,
    description            TEXT,
    -- A JSON array of event types; NULL: every type.
    event_types            TEXT,
    ordered                INTEGER NOT NULL DEFAULT 0 CONSTRAINT webhook_endpoints_ordered_flag CHECK (ordered IN (0, 1)),
    enabled                INTEGER NOT NULL DEFAULT 1 CONSTRAINT webhook_endpoints_enabled_flag CHECK (enabled IN (0, 1)),
    disabled_reason        TEXT,
    secret                 TEXT NOT NULL,
    previous_secret        TEXT,
    previous_secret_until  BIGINT,
    created_at             BIGINT NOT NULL,
    updated_at             BIGINT NOT NULL,
    deleted_at             BIGINT
);

CREATE TABLE webhook_deliveries (
    id               INTEGER PRIMARY KEY,
    endpoint_id      BIGINT NOT NULL REFERENCES webhook_endpoints (id),
    event_pk         BIGINT NOT NULL REFERENCES events (id),
    order_id         BIGINT,
    seq              BIGINT,
    status           TEXT NOT NULL CONSTRAINT webhook_deliveries_status_valid CHECK (status IN ('pending', 'succeeded', 'failed', 'dead')),
    attempts         BIGINT NOT NULL DEFAULT 0,
    -- When it is due (again); NULL once succeeded or dead.
    next_attempt_at  BIGINT,
    -- Set while an attempt is in flight: nobody else takes it before then.
    leased_until     BIGINT,
    last_attempt_at  BIGINT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at, id)
    WHERE status IN ('pending', 'failed');
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, id);
CREATE INDEX webhook_deliveries_by_event ON webhook_deliveries (event_pk);
-- Serves ordered endpoints: is an earlier event of this order still undelivered?
CREATE INDEX webhook_deliveries_open_by_order ON webhook_deliveries (endpoint_id, order_id, seq)
    WHERE status IN ('pending', 'failed') AND order_id IS NOT NULL;

CREATE TABLE webhook_attempts (
    id            INTEGER PRIMARY KEY,
    delivery_id   BIGINT NOT NULL REFERENCES webhook_deliveries (id),
    attempted_at  BIGINT NOT NULL,
    duration_ms   BIGINT NOT NULL,
    http_status   BIGINT,
    error         TEXT,
    response      TEXT
);
CREATE INDEX webhook_attempts_by_delivery ON webhook_attempts (delivery_id, id);
-- SQLite: the one process that writes wakes its own dispatcher.
