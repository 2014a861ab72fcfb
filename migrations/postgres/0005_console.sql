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

-- Orders per status and, per UTC day (unix milliseconds / 86,400,000) and currency, orders
-- placed that day and orders first paid that day with their totals (gross revenue: a later
-- refund does not take it back). A count is the sum of a key's rows.
--
-- Writers only ever insert rows here (what one statement changed), so no writer waits for
-- another on a counter: upserting shared rows would make a transition (which changes the
-- order before it locks products) and a placement (which locks products before it inserts
-- orders) wait for each other in opposite orders, a deadlock. One statement in 64 also
-- folds the committed rows into one per key, skipping rows another fold holds, so the tables
-- stay small and nobody waits there either.
CREATE TABLE order_status_counts (
    status  TEXT NOT NULL,
    n       BIGINT NOT NULL
);

CREATE TABLE order_day_totals (
    day         BIGINT NOT NULL,
    currency    TEXT NOT NULL,
    placed      BIGINT NOT NULL,
    paid        BIGINT NOT NULL,
    paid_cents  BIGINT NOT NULL
);

INSERT INTO order_status_counts (status, n)
SELECT status, COUNT(*) FROM orders GROUP BY status;

INSERT INTO order_day_totals (day, currency, placed, paid, paid_cents)
SELECT day, currency, SUM(placed), SUM(paid), SUM(paid_cents) FROM (
    SELECT created_at / 86400000 AS day, currency, 1 AS placed, 0 AS paid, 0 AS paid_cents FROM orders
    UNION ALL
    SELECT paid_at / 86400000, currency, 0, 1, total_cents FROM orders WHERE paid_at IS NOT NULL
) d GROUP BY day, currency;

CREATE FUNCTION ordo_fold_order_counters() RETURNS void LANGUAGE sql AS $$
    WITH gone AS (
        DELETE FROM order_status_counts WHERE ctid = ANY (ARRAY(
            SELECT ctid FROM order_status_counts FOR UPDATE SKIP LOCKED))
        RETURNING status, n
    )
    INSERT INTO order_status_counts (status, n)
    SELECT status, SUM(n) FROM gone GROUP BY status;
    WITH gone AS (
        DELETE FROM order_day_totals WHERE ctid = ANY (ARRAY(
            SELECT ctid FROM order_day_totals FOR UPDATE SKIP LOCKED))
        RETURNING day, currency, placed, paid, paid_cents
    )
    INSERT INTO order_day_totals (day, currency, placed, paid, paid_cents)
    SELECT day, currency, SUM(placed), SUM(paid), SUM(paid_cents) FROM gone GROUP BY day, currency;
$$;

-- Statement-level triggers: one counting statement per INSERT or UPDATE of orders, however
-- many rows it wrote (a placement batch, a sweep batch).
CREATE FUNCTION ordo_count_inserted_orders() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH by_status AS (
        INSERT INTO order_status_counts (status, n)
        SELECT status, COUNT(*) FROM new_orders GROUP BY status
    )
    INSERT INTO order_day_totals (day, currency, placed, paid, paid_cents)
    SELECT day, currency, SUM(placed), SUM(paid), SUM(paid_cents) FROM (
        SELECT created_at / 86400000 AS day, currency, 1 AS placed, 0 AS paid, 0 AS paid_cents
        FROM new_orders
        UNION ALL
        SELECT paid_at / 86400000, currency, 0, 1, total_cents FROM new_orders
        WHERE paid_at IS NOT NULL
    ) d GROUP BY day, currency;
    IF random() < 1.0 / 64 THEN
        PERFORM ordo_fold_order_counters();
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION ordo_count_updated_orders() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH pairs AS MATERIALIZED (
        SELECT o.status AS old_status, n.status AS new_status, o.paid_at AS old_paid_at,
               n.paid_at AS new_paid_at, n.currency, n.total_cents
        FROM old_orders o JOIN new_orders n ON n.id = o.id
        WHERE o.status <> n.status OR (o.paid_at IS NULL AND n.paid_at IS NOT NULL)
    ), by_status AS (
        INSERT INTO order_status_counts (status, n)
        SELECT status, SUM(delta) FROM (
            SELECT new_status AS status, 1 AS delta FROM pairs WHERE new_status <> old_status
            UNION ALL
            SELECT old_status, -1 FROM pairs WHERE new_status <> old_status
        ) m GROUP BY status HAVING SUM(delta) <> 0
    )
    INSERT INTO order_day_totals (day, currency, placed, paid, paid_cents)
    SELECT new_paid_at / 86400000, currency, 0, COUNT(*), SUM(total_cents)
    FROM pairs WHERE old_paid_at IS NULL AND new_paid_at IS NOT NULL
    GROUP BY new_paid_at / 86400000, currency;
    IF random() < 1.0 / 64 THEN
        PERFORM ordo_fold_order_counters();
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER orders_counted_on_insert AFTER INSERT ON orders
    REFERENCING NEW TABLE AS new_orders
    FOR EACH STATEMENT EXECUTE FUNCTION ordo_count_inserted_orders();
CREATE TRIGGER orders_counted_on_update AFTER UPDATE ON orders
    REFERENCING OLD TABLE AS old_orders NEW TABLE AS new_orders
    FOR EACH STATEMENT EXECUTE FUNCTION ordo_count_updated_orders();

-- The console's order list, newest first: all orders, one status, a date range, one
-- product's orders; an order's webhook deliveries for its timeline.
CREATE INDEX orders_by_created ON orders (created_at, id);
CREATE INDEX orders_by_status_created ON orders (status, created_at, id);
CREATE INDEX order_items_by_product ON order_items (product_id, order_id);
CREATE INDEX webhook_deliveries_by_order ON webhook_deliveries (order_id, id)
    WHERE order_id IS NOT NULL;
