-- ordo core schema (SQLite; flags are INTEGER 0/1, as the sqlx Any driver reads no SQLite BOOLEAN). Money is BIGINT cents, times are BIGINT unix milliseconds (UTC).

CREATE TABLE users (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL CONSTRAINT users_role_valid CHECK (role IN ('customer', 'staff')),
    created_at  BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    id          INTEGER PRIMARY KEY,
    user_id     BIGINT NOT NULL REFERENCES users (id),
    token_hash  TEXT NOT NULL CONSTRAINT api_tokens_hash_unique UNIQUE,
    created_at  BIGINT NOT NULL
);

CREATE TABLE products (
    id           INTEGER PRIMARY KEY,
    sku          TEXT NOT NULL CONSTRAINT products_sku_unique UNIQUE,
    name         TEXT NOT NULL,
    price_cents  BIGINT NOT NULL CONSTRAINT products_price_not_negative CHECK (price_cents >= 0),
    currency     TEXT NOT NULL CONSTRAINT products_currency_iso CHECK (length(currency) = 3),
    stock        BIGINT NOT NULL CONSTRAINT products_stock_not_negative CHECK (stock >= 0),
    sales_count  BIGINT NOT NULL DEFAULT 0 CONSTRAINT products_sales_not_negative CHECK (sales_count >= 0),
    active       INTEGER NOT NULL DEFAULT 1 CONSTRAINT products_active_flag CHECK (active IN (0, 1)),
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);

CREATE TABLE orders (
    id               INTEGER PRIMARY KEY,
    number           TEXT NOT NULL CONSTRAINT orders_number_unique UNIQUE,
    user_id          BIGINT NOT NULL REFERENCES users (id),
    status           TEXT NOT NULL CONSTRAINT orders_status_valid CHECK (status IN
                         ('pending', 'paid', 'shipped', 'completed', 'cancelled', 'refunding', 'refunded')),
    total_cents      BIGINT NOT NULL CONSTRAINT orders_total_not_negative CHECK (total_cents >= 0),
    currency         TEXT NOT NULL,
    note             TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    paid_at          BIGINT,
    completed_at     BIGINT,
    cancelled_at     BIGINT,
    cancel_reason    TEXT,
    carrier          TEXT,
    tracking_number  TEXT,
    CONSTRAINT orders_cancelled_has_time CHECK (status <> 'cancelled' OR cancelled_at IS NOT NULL)
);
-- Serves the unpaid-order sweep: pending orders by age.
CREATE INDEX orders_pending_by_age ON orders (created_at, id) WHERE status = 'pending';
CREATE INDEX orders_by_user ON orders (user_id, id);

CREATE TABLE order_items (
    order_id          BIGINT NOT NULL REFERENCES orders (id),
    product_id        BIGINT NOT NULL REFERENCES products (id),
    quantity          BIGINT NOT NULL CONSTRAINT order_items_quantity_positive CHECK (quantity > 0),
    unit_price_cents  BIGINT NOT NULL CONSTRAINT order_items_price_not_negative CHECK (unit_price_cents >= 0),
    PRIMARY KEY (order_id, product_id)
);

CREATE TABLE payments (
    id               INTEGER PRIMARY KEY,
    order_id         BIGINT NOT NULL REFERENCES orders (id),
    amount_cents     BIGINT NOT NULL CONSTRAINT payments_amount_not_negative CHECK (amount_cents >= 0),
    method           TEXT NOT NULL,
    status           TEXT NOT NULL CONSTRAINT payments_status_valid CHECK (status IN
                         ('pending', 'succeeded', 'failed', 'expired', 'cancelled', 'refunded')),
    expires_at       BIGINT NOT NULL,
    provider_ref     TEXT,
    refund_required  INTEGER NOT NULL DEFAULT 0 CONSTRAINT payments_refund_required_flag CHECK (refund_required IN (0, 1)),
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX payments_by_order ON payments (order_id);
CREATE INDEX payments_refund_required ON payments (id) WHERE refund_required;

CREATE TABLE payment_events (
    event_id     TEXT PRIMARY KEY,
    payment_id   BIGINT NOT NULL REFERENCES payments (id),
    status       TEXT NOT NULL,
    received_at  BIGINT NOT NULL
);

CREATE TABLE order_status_history (
    id           INTEGER PRIMARY KEY,
    order_id     BIGINT NOT NULL REFERENCES orders (id),
    from_status  TEXT,
    to_status    TEXT NOT NULL,
    actor        TEXT NOT NULL,
    note         TEXT,
    created_at   BIGINT NOT NULL
);
CREATE INDEX order_status_history_by_order ON order_status_history (order_id, id);

-- Append-only stock ledger: for every product, stock = sum(delta).
CREATE TABLE stock_movements (
    id          INTEGER PRIMARY KEY,
    product_id  BIGINT NOT NULL REFERENCES products (id),
    order_id    BIGINT REFERENCES orders (id),
    delta       BIGINT NOT NULL CONSTRAINT stock_movements_delta_not_zero CHECK (delta <> 0),
    reason      TEXT NOT NULL CONSTRAINT stock_movements_reason_valid CHECK (reason IN ('reserve', 'release', 'adjust', 'restock')),
    actor       TEXT NOT NULL,
    note        TEXT,
    created_at  BIGINT NOT NULL,
    CONSTRAINT stock_movements_order_reason CHECK ((order_id IS NULL) = (reason = 'adjust'))
);
CREATE INDEX stock_movements_by_product ON stock_movements (product_id, id);
-- An order's stock is reserved, released and restocked at most once per product:
-- a second release is impossible at the database level, whatever races or retries occur.
CREATE UNIQUE INDEX stock_movements_once_per_order ON stock_movements (order_id, product_id, reason)
    WHERE order_id IS NOT NULL;
