-- One broker endpoint, however many processes start at once. (The delivery foreign keys
-- dropped on PostgreSQL by this migration stay here: one writer, no lock to share.)
CREATE UNIQUE INDEX webhook_endpoints_one_broker ON webhook_endpoints (kind)
    WHERE kind = 'amqp' AND deleted_at IS NULL;

-- Nothing looks deliveries up by event: one index less to write per delivery.
DROP INDEX webhook_deliveries_by_event;
