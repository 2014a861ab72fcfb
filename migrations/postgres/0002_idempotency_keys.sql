-- Idempotency-Key on order creation: one order per (user, key); the request's hash tells a
-- retry (same body: the same order back) from a reuse of the key for another body.
CREATE TABLE idempotency_keys (
    user_id       BIGINT NOT NULL REFERENCES users (id),
    key           TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    order_id      BIGINT REFERENCES orders (id),
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (user_id, key)
);
