-- Writing a delivery costs an order's placement as little as it can.
--
-- The foreign keys of webhook_deliveries made every placement that fans out share-lock
-- the same endpoint row (many transactions at once: a multixact each time) and run a
-- check per row. Endpoints are never removed (deleted_at marks them) and events are never
-- removed either, so the keys guarded nothing the code can do; `ordo check` reports any
-- delivery that names no endpoint or no event.
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_endpoint_id_fkey;
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_event_pk_fkey;

-- Dispatchers are told by the writing process after its commit (see events::Wake): a
-- NOTIFY inside the transaction holds a database-wide lock through the commit.
DROP TRIGGER webhook_deliveries_notify ON webhook_deliveries;
DROP FUNCTION ordo_notify_deliveries();

-- One broker endpoint, however many processes start at once.
CREATE UNIQUE INDEX webhook_endpoints_one_broker ON webhook_endpoints (kind)
    WHERE kind = 'amqp' AND deleted_at IS NULL;

-- Nothing looks deliveries up by event: one index less to write per delivery.
DROP INDEX webhook_deliveries_by_event;
