-- Two index entries fewer for every delivery written and every attempt recorded.
--
-- An ordered endpoint's check ("is an earlier event of this order still undelivered?")
-- finds the order's few deliveries through webhook_deliveries_by_order, as well as
-- through an index of its own. Deliveries are listed newest first, walking the primary key
-- backwards with the filters (a shop has a handful of endpoints), so nothing needs them
-- by endpoint either.
DROP INDEX webhook_deliveries_open_by_order;
DROP INDEX webhook_deliveries_by_endpoint;
