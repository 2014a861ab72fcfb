-- The console shows its day and hour charts in the shop's time zone (`time_zone`), whose
-- days need not start at midnight UTC: the per-day totals become per quarter-hour totals
-- (unix milliseconds / 900,000, UTC), which add up to the days and hours of any time zone
-- (every zone's offset is a whole number of quarter-hours).
--
-- Writers only insert rows here, as before (migration 0005). A table of quarter-hours
-- grows by 96 keys a day per currency, so the fold no longer rewrites the whole table: it
-- folds the last two days' keys, where new rows land (orders are placed and paid now),
-- found through the index on quarter.
CREATE TABLE order_time_totals (
    quarter     BIGINT NOT NULL,
    currency    TEXT NOT NULL,
    placed      BIGINT NOT NULL,
    paid        BIGINT NOT NULL,
    paid_cents  BIGINT NOT NULL
);
CREATE INDEX order_time_totals_by_quarter ON order_time_totals (quarter);

INSERT INTO order_time_totals (quarter, currency, placed, paid, paid_cents)
SELECT quarter, currency, SUM(placed), SUM(paid), SUM(paid_cents) FROM (
    SELECT created_at / 900000 AS quarter, currency, 1 AS placed, 0 AS paid, 0 AS paid_cents FROM orders
    UNION ALL
    SELECT paid_at / 900000, currency, 0, 1, total_cents FROM orders WHERE paid_at IS NOT NULL
) d GROUP BY quarter, currency;

CREATE OR REPLACE FUNCTION ordo_fold_order_counters() RETURNS void LANGUAGE sql AS $$
    WITH gone AS (
        DELETE FROM order_status_counts WHERE ctid = ANY (ARRAY(
            SELECT ctid FROM order_status_counts FOR UPDATE SKIP LOCKED))
        RETURNING status, n
    )
    INSERT INTO order_status_counts (status, n)
    SELECT status, SUM(n) FROM gone GROUP BY status;
    WITH gone AS (
        DELETE FROM order_time_totals WHERE ctid = ANY (ARRAY(
            SELECT ctid FROM order_time_totals
            WHERE quarter >= (SELECT MAX(quarter) FROM order_time_totals) - 192
            FOR UPDATE SKIP LOCKED))
        RETURNING quarter, currency, placed, paid, paid_cents
    )
    INSERT INTO order_time_totals (quarter, currency, placed, paid, paid_cents)
    SELECT quarter, currency, SUM(placed), SUM(paid), SUM(paid_cents) FROM gone GROUP BY quarter, currency;
$$;

CREATE OR REPLACE FUNCTION ordo_count_inserted_orders() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH by_status AS (
        INSERT INTO order_status_counts (status, n)
        SELECT status, COUNT(*) FROM new_orders GROUP BY status
    )
    INSERT INTO order_time_totals (quarter, currency, placed, paid, paid_cents)
    SELECT quarter, currency, SUM(placed), SUM(paid), SUM(paid_cents) FROM (
        SELECT created_at / 900000 AS quarter, currency, 1 AS placed, 0 AS paid, 0 AS paid_cents
        FROM new_orders
        UNION ALL
        SELECT paid_at / 900000, currency, 0, 1, total_cents FROM new_orders
        WHERE paid_at IS NOT NULL
    ) d GROUP BY quarter, currency;
    IF random() < 1.0 / 64 THEN
        PERFORM ordo_fold_order_counters();
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION ordo_count_updated_orders() RETURNS trigger LANGUAGE plpgsql AS $$
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
    INSERT INTO order_time_totals (quarter, currency, placed, paid, paid_cents)
    SELECT new_paid_at / 900000, currency, 0, COUNT(*), SUM(total_cents)
    FROM pairs WHERE old_paid_at IS NULL AND new_paid_at IS NOT NULL
    GROUP BY new_paid_at / 900000, currency;
    IF random() < 1.0 / 64 THEN
        PERFORM ordo_fold_order_counters();
    END IF;
    RETURN NULL;
END
$$;

DROP TABLE order_day_totals;
