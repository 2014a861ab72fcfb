-- Monitoring counts dead webhook deliveries at every scrape (ordo_webhook_deliveries_dead):
-- a partial index holds only those rows. A delivery's status is already in the predicate
-- of webhook_deliveries_due, so this index costs an update nothing more.
CREATE INDEX webhook_deliveries_dead ON webhook_deliveries (id) WHERE status = 'dead';
