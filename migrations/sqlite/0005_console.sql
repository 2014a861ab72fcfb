-- The staff console: its sign-in sessions, counters kept by triggers so that the status tabs
-- and the dashboard never count the orders table, and the indexes behind its lists.

-- A session is a staff token turned into a cookie; only the SHA-256 of the cookie's id is
-- stored. It lives while its token does and for 12 idle hours.
CREATE TABLE console_sessions (
    id_hash       TEXT PRIMARY KEY,
    user_id       BIGINT NOT NULL REFERENCES users (id),
    token_id      BIGINT NOT NULL REFERENCES api_tokens (id),
    created_at    BIGINT NOT NULL,
    last_seen_at  BIGINT NOT NULL
);
CREATE INDEX console_sessions_by_token ON console_sessions (token_id);

-- Orders per status. SQLite has one writer at a time, so one row per status, kept by
-- row-level triggers; a count is still read as the sum of its key's rows, as on PostgreSQL.
CREATE TABLE order_status_counts (
    status  TEXT PRIMARY KEY,
    n       BIGINT NOT NULL
);

-- Per UTC day (unix milliseconds / 86,400,000) and currency: orders placed that day, and
-- orders first paid that day with their totals (gross revenue: a later refund does not
-- take it back).
CREATE TABLE order_day_totals (
    day         BIGINT NOT NULL,
    currency    TEXT NOT NULL,
    placed      BIGINT NOT NULL,
    paid        BIGINT NOT NULL,
    paid_cents  BIGINT NOT NULL,
    PRIMARY KEY (day, currency)
);

INSERT INTO order_status_counts (status, n)
SELECT status, COUNT(*) FROM orders GROUP BY status;

INSERT INTO order_day_totals (day, currency, placed, paid, paid_cents)
SELECT day, currency, SUM(placed), SUM(paid), SUM(paid_cents) FROM (
    SELECT created_at / 86400000 AS day, currency, 1 AS placed, 0 AS paid, 0 AS paid_cents FROM orders
    UNION ALL
    SELECT paid_at / 86400000, currency, 0, 1, total_cents FROM orders WHERE paid_at IS NOT NULL
) d WHERE true GROUP BY day, currency;

CREATE TRIGGER orders_counted_on_insert AFTER INSERT ON orders BEGIN
    INSERT INTO order_status_counts (status, n) VALUES (NEW.status, 1)
        ON CONFLICT (status) DO UPDATE SET n = n + 1;
    INSERT INTO order_day_totals (day, currency, placed, paid, paid_cents)
        VALUES (NEW.created_at / 86400000, NEW.currency, 1, 0, 0)
        ON CONFLICT (day, currency) DO UPDATE SET placed = placed + 1;
    INSERT INTO order_day_totals (day, currency, placed, paid, paid_cents)
        SELECT NEW.paid_at / 86400000, NEW.currency, 0, 1, NEW.total_cents
        WHERE NEW.paid_at IS NOT NULL
        ON CONFLICT (day, currency) DO UPDATE SET paid = paid + 1,
            paid_cents = paid_cents + excluded.paid_cents;
END;

CREATE TRIGGER orders_counted_on_status AFTER UPDATE OF status ON orders
WHEN OLD.status <> NEW.status BEGIN
    UPDATE order_status_counts SET n = n - 1 WHERE status = OLD.status;
    INSERT INTO order_status_counts (status, n) VALUES (NEW.status, 1)
        ON CONFLICT (status) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER orders_counted_on_payment AFTER UPDATE OF paid_at ON orders
WHEN OLD.paid_at IS NULL AND NEW.paid_at IS NOT NULL BEGIN
    INSERT INTO order_day_totals (day, currency, placed, paid, paid_cents)
        VALUES (NEW.paid_at / 86400000, NEW.currency, 0, 1, NEW.total_cents)
        ON CONFLICT (day, currency) DO UPDATE SET paid = paid + 1,
            paid_cents = paid_cents + excluded.paid_cents;
END;

-- The console's order list, newest first: all orders, one status, a date range, one
-- product's orders; an order's webhook deliveries for its timeline.
CREATE INDEX orders_by_created ON orders (created_at, id);
CREATE INDEX orders_by_status_created ON orders (status, created_at, id);
CREATE INDEX order_items_by_product ON order_items (product_id, order_id);
CREATE INDEX webhook_deliveries_by_order ON webhook_deliveries (order_id, id)
    WHERE order_id IS NOT NULL;
