-- Customers as the shop's own backend knows them, what the warehouse needs to ship an order,
-- and the shipping information WeChat mini-program shops must report.
--
-- A customer is a user with the customer role: `name` is its display name. The shop's own
-- id for it (`external_id`) is unique; existing users keep everything and have none.
-- `erased_at` records a personal-data erasure (the name, phone and openid replaced).
ALTER TABLE users ADD COLUMN external_id TEXT;
ALTER TABLE users ADD COLUMN phone TEXT;
-- The phone's digits alone: what a search by phone matches, however the number was written.
ALTER TABLE users ADD COLUMN phone_digits TEXT;
ALTER TABLE users ADD COLUMN updated_at BIGINT;
ALTER TABLE users ADD COLUMN erased_at BIGINT;
UPDATE users SET updated_at = created_at;
-- NULLs are distinct: any number of users without one.
CREATE UNIQUE INDEX users_external_id ON users (external_id);

-- The address an order ships to, as given at placement (or corrected by staff before it
-- shipped): a JSON object, NULL when none was given.
ALTER TABLE orders ADD COLUMN shipping_address TEXT;

-- Each line keeps the product's SKU and name as they were when it was ordered; lines of
-- orders placed before this migration take them from the product as it is now.
ALTER TABLE order_items ADD COLUMN sku TEXT;
ALTER TABLE order_items ADD COLUMN name TEXT;
UPDATE order_items SET
    sku = (SELECT p.sku FROM products p WHERE p.id = order_items.product_id),
    name = (SELECT p.name FROM products p WHERE p.id = order_items.product_id);

-- Shipping information to upload to WeChat (upload_shipping_info) for an order paid through
-- WeChat Pay JSAPI: written in the transaction that ships the order, delivered by a worker
-- beside the webhook dispatcher with the webhooks' retry schedule, claimed like deliveries
-- (a lease per attempt), until WeChat accepts it.
CREATE TABLE wechat_shipping_uploads (
    id               INTEGER PRIMARY KEY,
    order_id         BIGINT NOT NULL REFERENCES orders (id),
    payment_id       BIGINT NOT NULL REFERENCES payments (id),
    status           TEXT NOT NULL CONSTRAINT wechat_shipping_uploads_status_valid CHECK (status IN ('pending', 'failed', 'succeeded', 'dead')),
    attempts         BIGINT NOT NULL DEFAULT 0,
    -- When it is due (again); NULL once accepted or given up.
    next_attempt_at  BIGINT,
    leased_until     BIGINT,
    last_attempt_at  BIGINT,
    -- What WeChat (or the way to it) last said when it did not accept.
    last_error       TEXT,
    accepted_at      BIGINT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE UNIQUE INDEX wechat_shipping_uploads_by_order ON wechat_shipping_uploads (order_id);
CREATE INDEX wechat_shipping_uploads_due ON wechat_shipping_uploads (next_attempt_at, id)
    WHERE status IN ('pending', 'failed');
