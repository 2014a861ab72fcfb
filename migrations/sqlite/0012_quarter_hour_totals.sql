-- The console shows its day and hour charts in the shop's time zone (`time_zone`), whose
-- days need not start at midnight UTC: the per-day totals become per quarter-hour totals
-- (unix milliseconds / 900,000, UTC), which add up to the days and hours of any time zone
-- (every zone's offset is a whole number of quarter-hours).
CREATE TABLE order_time_totals (
    quarter     BIGINT NOT NULL,
    currency    TEXT NOT NULL,
    placed      BIGINT NOT NULL,
    paid        BIGINT NOT NULL,
    paid_cents  BIGINT NOT NULL,
    PRIMARY KEY (quarter, currency)
);

INSERT INTO order_time_totals (quarter, currency, placed, paid, paid_cents)
SELECT quarter, currency, SUM(placed), SUM(paid), SUM(paid_cents) FROM (
    SELECT created_at / 900000 AS quarter, currency, 1 AS placed, 0 AS paid, 0 AS paid_cents FROM orders
    UNION ALL
    SELECT paid_at / 900000, currency, 0, 1, total_cents FROM orders WHERE paid_at IS NOT NULL
) d WHERE true GROUP BY quarter, currency;

DROP TRIGGER orders_counted_on_insert;
DROP TRIGGER orders_counted_on_payment;
DROP TABLE order_day_totals;

CREATE TRIGGER orders_counted_on_insert AFTER INSERT ON orders BEGIN
    INSERT INTO order_status_counts (status, n) VALUES (NEW.status, 1)
        ON CONFLICT (status) DO UPDATE SET n = n + 1;
    INSERT INTO order_time_totals (quarter, currency, placed, paid, paid_cents)
        VALUES (NEW.created_at / 900000, NEW.currency, 1, 0, 0)
        ON CONFLICT (quarter, currency) DO UPDATE SET placed = placed + 1;
    INSERT INTO order_time_totals (quarter, currency, placed, paid, paid_cents)
        SELECT NEW.paid_at / 900000, NEW.currency, 0, 1, NEW.total_cents
        WHERE NEW.paid_at IS NOT NULL
        ON CONFLICT (quarter, currency) DO UPDATE SET paid = paid + 1,
            paid_cents = paid_cents + excluded.paid_cents;
END;

CREATE TRIGGER orders_counted_on_payment AFTER UPDATE OF paid_at ON orders
WHEN OLD.paid_at IS NULL AND NEW.paid_at IS NOT NULL BEGIN
    INSERT INTO order_time_totals (quarter, currency, placed, paid, paid_cents)
        VALUES (NEW.paid_at / 900000, NEW.currency, 0, 1, NEW.total_cents)
        ON CONFLICT (quarter, currency) DO UPDATE SET paid = paid + 1,
            paid_cents = paid_cents + excluded.paid_cents;
END;
