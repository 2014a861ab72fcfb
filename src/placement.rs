//! Placing orders. Concurrent placements are combined (README: Placing orders): each process
//! queues them in a lane (one by default; more, by product, with `ORDO_PLACEMENT_LANES`),
//! and while one batch commits the next collects. One transaction per batch locks the
//! customers and the products once (in id order, so nothing deadlocks), allocates stock
//! first come first served, takes it once per product, and writes every order with its
//! items, ledger rows, history row, payment, idempotency key and events. Each caller is
//! answered only after that commit. A request refused for its own reason (no stock, a
//! limit, a reused key) is answered with that reason and does not fail the others; if the
//! batch as a whole fails, it is split and retried, down to single orders.

use crate::audit::{self, Object};
use crate::db::{self, Db};
use crate::domain::{
    Actor, Millis, Order, OrderDetails, OrderItem, OrderStatus, Payment, PaymentProvider, Product,
    ShippingAddress,
};
use crate::error::{Error, Result};
use crate::events::{self, EventType, NewEvent};
use crate::inventory::MAX_AMOUNT;
use crate::{Clock, Policy};
use rand::Rng;
use serde_json::json;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, OnceLock};
use tokio::sync::{mpsc, oneshot};

/// A placed order and its first payment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct PlacedOrder {
    pub order: OrderDetails,
    pub payment: Payment,
}

/// Most orders in one batch.
pub const MAX_BATCH: usize = 256;

/// One order to place, already authorized and validated.
#[derive(Debug, Clone)]
pub(crate) struct PlacementRequest {
    pub actor: Actor,
    pub user_id: i64,
    /// Merged lines in product-id order.
    pub lines: Vec<(i64, i64)>,
    pub note: Option<String>,
    /// Where it ships to, already checked.
    pub shipping_address: Option<ShippingAddress>,
    /// The caller's idempotency key and the request's hash.
    pub key: Option<(String, String)>,
    pub policy: Policy,
    pub clock: Clock,
    /// The id of the request it came from, for the audit log.
    pub request_id: Option<String>,
}

impl PlacementRequest {
    /// Whose keys these are: the caller's (staff placing for a customer use their own).
    fn key_owner(&self) -> i64 {
        self.actor.user_id().unwrap_or(0)
    }
}

/// What a placement came to.
#[derive(Debug)]
pub(crate) enum Placed {
    New(Box<PlacedOrder>),
    /// An earlier request with the same key placed this order.
    Replay(i64),
}

enum Outcome {
    Done(Result<Placed>),
    /// Shares its key with an earlier request of the same batch: try again once that
    /// one has committed.
    Again,
}

struct Job {
    request: PlacementRequest,
    reply: oneshot::Sender<Result<Placed>>,
    /// When it was queued: how long orders wait to be combined is measured from it.
    queued: std::time::Instant,
}

/// The per-process queue of placements.
pub(crate) struct Combiner {
    db: Db,
    outbox: Arc<events::Wake>,
    lanes: OnceLock<Vec<mpsc::UnboundedSender<Job>>>,
}

impl std::fmt::Debug for Combiner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Combiner").finish_non_exhaustive()
    }
}

impl Combiner {
    pub fn new(db: Db, outbox: Arc<events::Wake>) -> Combiner {
        Combiner {
            db,
            outbox,
            lanes: OnceLock::new(),
        }
    }

    /// Lanes per process: one by default on both databases. More lanes commit batches for
    /// different products side by side, but each batch is smaller: on PostgreSQL with two
    /// cores four lanes cost it 30-40 % more CPU per order for no more orders
    /// (BENCHMARKS.md, order placement).
    fn lane_count(&self) -> usize {
        if let Some(n) = std::env::var("ORDO_PLACEMENT_LANES")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|n| (1..=64).contains(n))
        {
            return n;
        }
        1
    }

    /// Queues the request in its lane and waits for its batch to commit.
    pub async fn place(&self, request: PlacementRequest) -> Result<Placed> {
        let lanes = self.lanes.get_or_init(|| {
            (0..self.lane_count())
                .map(|_| {
                    let (tx, rx) = mpsc::unbounded_channel();
                    tokio::spawn(run_lane(self.db.clone(), self.outbox.clone(), rx));
                    tx
                })
                .collect()
        });
        let first_product = request.lines.first().map_or(0, |l| l.0);
        let lane = &lanes[first_product.unsigned_abs() as usize % lanes.len()];
        let (reply, answer) = oneshot::channel();
        lane.send(Job {
            request,
            reply,
            queued: std::time::Instant::now(),
        })
        .map_err(|_| Error::Unavailable("the placement queue has stopped".to_owned()))?;
        answer
            .await
            .map_err(|_| Error::Unavailable("the placement queue has stopped".to_owned()))?
    }
}

/// A lane: takes what is queued (up to [`MAX_BATCH`]), places it as one batch, answers
/// every caller, and goes again. Ends when every sender is gone.
async fn run_lane(db: Db, outbox: Arc<events::Wake>, mut queue: mpsc::UnboundedReceiver<Job>) {
    let mut jobs: Vec<Job> = Vec::new();
    loop {
        if jobs.is_empty() {
            match queue.recv().await {
                Some(job) => jobs.push(job),
                None => return,
            }
        }
        while jobs.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let batch = std::mem::take(&mut jobs);
        metrics::histogram!("ordo_placement_batch_size").record(batch.len() as f64);
        let waited = metrics::histogram!("ordo_placement_wait_seconds");
        for job in &batch {
            waited.record(job.queued.elapsed().as_secs_f64());
        }
        let requests: Vec<&PlacementRequest> = batch.iter().map(|j| &j.request).collect();
        let started = std::time::Instant::now();
        let outcomes = place_or_split(&db, &requests).await;
        metrics::histogram!("ordo_placement_batch_seconds").record(started.elapsed().as_secs_f64());
        let mut placed = false;
        for (job, outcome) in batch.into_iter().zip(outcomes) {
            match outcome {
                Outcome::Done(result) => {
                    placed |= matches!(result, Ok(Placed::New(_)));
                    let _ = job.reply.send(result);
                }
                Outcome::Again => jobs.push(job),
            }
        }
        if placed {
            outbox.written(&db).await;
        }
    }
}

/// Places the batch; if it fails as a whole, places its halves, down to single orders,
/// so that only the order at fault fails.
async fn place_or_split(db: &Db, requests: &[&PlacementRequest]) -> Vec<Outcome> {
    match place_batch(db, requests).await {
        Ok(outcomes) => outcomes,
        Err(err) if requests.len() == 1 => vec![Outcome::Done(Err(err))],
        Err(err) if err.is_unavailable() => requests
            .iter()
            .map(|_| Outcome::Done(Err(Error::Unavailable(err.to_string()))))
            .collect(),
        Err(err) => {
            tracing::warn!(error = %err, orders = requests.len(), "placement batch failed; splitting it");
            let (left, right) = requests.split_at(requests.len() / 2);
            let mut outcomes = Box::pin(place_or_split(db, left)).await;
            outcomes.extend(Box::pin(place_or_split(db, right)).await);
            outcomes
        }
    }
}

/// A public order number: random, so it says nothing about ids or volumes.
pub(crate) fn new_order_number() -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let mut rng = rand::rng();
    let code: String = (0..12)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("ORD-{}-{}-{}", &code[0..4], &code[4..8], &code[8..12])
}

/// An order the allocation accepted, before it is written.
struct Accepted {
    index: usize,
    number: String,
    items: Vec<OrderItem>,
    total: i64,
    currency: String,
}

fn json_text(value: serde_json::Value) -> String {
    value.to_string()
}

fn ids_json(ids: impl IntoIterator<Item = i64>) -> String {
    json_text(json!(ids.into_iter().collect::<Vec<_>>()))
}

/// One transaction for the whole batch; the outcomes are in request order.
async fn place_batch(db: &Db, requests: &[&PlacementRequest]) -> Result<Vec<Outcome>> {
    let dialect = db.dialect();
    let now = requests[0].clock.now();
    let mut outcomes: Vec<Option<Outcome>> = requests.iter().map(|_| None).collect();
    let mut tx = db.write_tx().await?;

    // Idempotency keys: one request per key in a batch; the key claimed first decides.
    let mut seen_in_batch = HashSet::new();
    let mut claimed: HashSet<(i64, String)> = HashSet::new();
    let keyed: Vec<usize> = (0..requests.len())
        .filter(|&i| {
            let Some((key, _)) = &requests[i].key else {
                return false;
            };
            if seen_in_batch.insert((requests[i].key_owner(), key.clone())) {
                true
            } else {
                outcomes[i] = Some(Outcome::Again);
                false
            }
        })
        .collect();
    if !keyed.is_empty() {
        let rows: Vec<_> = keyed
            .iter()
            .map(|&i| {
                let (key, hash) = requests[i].key.as_ref().expect("keyed");
                json!({"user_id": requests[i].key_owner(), "key": key, "hash": hash})
            })
            .collect();
        claimed = db::placement::claim_keys(&mut tx, dialect, &json_text(json!(rows)), now)
            .await?
            .into_iter()
            .collect();
        let unclaimed: Vec<usize> = keyed
            .iter()
            .copied()
            .filter(|&i| !claimed.contains(&key_of(requests[i])))
            .collect();
        if !unclaimed.is_empty() {
            let rows: Vec<_> = unclaimed
                .iter()
                .map(|&i| json!({"user_id": requests[i].key_owner(), "key": key_of(requests[i]).1}))
                .collect();
            let seen: HashMap<(i64, String), (String, Option<i64>)> =
                db::placement::seen_keys(&mut tx, dialect, &json_text(json!(rows)))
                    .await?
                    .into_iter()
                    .map(|(user, key, hash, order)| ((user, key), (hash, order)))
                    .collect();
            for i in unclaimed {
                let hash = &requests[i].key.as_ref().expect("keyed").1;
                outcomes[i] = Some(Outcome::Done(match seen.get(&key_of(requests[i])) {
                    Some((seen_hash, _)) if seen_hash != hash => Err(Error::IdempotencyKeyReused),
                    Some((_, Some(order_id))) => Ok(Placed::Replay(*order_id)),
                    _ => Err(Error::Conflict(
                        "the first request with this Idempotency-Key is still being placed; retry"
                            .to_owned(),
                    )),
                }));
            }
        }
    }

    // The customers: locked, then their unpaid orders counted, so racing batches for one
    // customer cannot both slip under the limit.
    let open: Vec<usize> = (0..requests.len())
        .filter(|&i| outcomes[i].is_none())
        .collect();
    let customers: BTreeSet<i64> = open.iter().map(|&i| requests[i].user_id).collect();
    let mut pending: HashMap<i64, i64> = HashMap::new();
    if !customers.is_empty() {
        let ids = ids_json(customers.iter().copied());
        let existing: HashSet<i64> = db::placement::lock_customers(&mut tx, dialect, &ids)
            .await?
            .into_iter()
            .collect();
        if open
            .iter()
            .any(|&i| requests[i].policy.max_pending_orders_per_customer > 0)
        {
            pending = db::placement::pending_per_customer(&mut tx, dialect, &ids)
                .await?
                .into_iter()
                .collect();
        }
        for &i in &open {
            if !existing.contains(&requests[i].user_id) {
                outcomes[i] = Some(Outcome::Done(Err(Error::validation(
                    "user_id",
                    format!("user {} does not exist", requests[i].user_id),
                ))));
            }
        }
    }

    // The products, locked once, and the stock allocated first come first served.
    let open: Vec<usize> = (0..requests.len())
        .filter(|&i| outcomes[i].is_none())
        .collect();
    let product_ids: BTreeSet<i64> = open
        .iter()
        .flat_map(|&i| requests[i].lines.iter().map(|l| l.0))
        .collect();
    let mut products: HashMap<i64, Product> = if product_ids.is_empty() {
        HashMap::new()
    } else {
        db::placement::lock_products(&mut tx, dialect, &ids_json(product_ids.iter().copied()))
            .await?
            .into_iter()
            .map(|p| (p.id, p))
            .collect()
    };
    let mut accepted: Vec<Accepted> = Vec::new();
    let mut taken: HashMap<i64, i64> = HashMap::new();
    for i in open {
        match allocate(requests[i], &mut products, &mut pending) {
            Ok((items, total, currency)) => {
                for item in &items {
                    *taken.entry(item.product_id).or_insert(0) += item.quantity;
                }
                accepted.push(Accepted {
                    index: i,
                    number: new_order_number(),
                    items,
                    total,
                    currency,
                });
            }
            Err(err) => outcomes[i] = Some(Outcome::Done(Err(err))),
        }
    }

    // Keys claimed for requests that were refused are free again.
    let refused_keys: Vec<_> = (0..requests.len())
        .filter(|&i| {
            matches!(outcomes[i], Some(Outcome::Done(Err(_))))
                && requests[i].key.is_some()
                && claimed.contains(&key_of(requests[i]))
        })
        .map(|i| json!({"user_id": requests[i].key_owner(), "key": key_of(requests[i]).1}))
        .collect();
    if !refused_keys.is_empty() {
        db::placement::release_keys(&mut tx, dialect, &json_text(json!(refused_keys))).await?;
    }
    if accepted.is_empty() {
        if refused_keys.is_empty() {
            tx.rollback().await?;
        } else {
            tx.commit().await?;
        }
        return Ok(outcomes
            .into_iter()
            .map(|o| o.unwrap_or(Outcome::Again))
            .collect());
    }

    let placed = write_orders(&mut tx, dialect, requests, &accepted, &taken, now).await?;
    tx.commit().await?;
    metrics::counter!("ordo_orders_placed_total").increment(placed.len() as u64);
    for (index, order) in placed {
        outcomes[index] = Some(Outcome::Done(Ok(Placed::New(Box::new(order)))));
    }
    Ok(outcomes
        .into_iter()
        .map(|o| o.unwrap_or(Outcome::Again))
        .collect())
}

fn key_of(request: &PlacementRequest) -> (i64, String) {
    (
        request.key_owner(),
        request
            .key
            .as_ref()
            .map(|k| k.0.clone())
            .unwrap_or_default(),
    )
}

/// Allocates one request against what is left: all its lines or nothing.
fn allocate(
    request: &PlacementRequest,
    products: &mut HashMap<i64, Product>,
    pending: &mut HashMap<i64, i64>,
) -> Result<(Vec<OrderItem>, i64, String)> {
    let limit = i64::from(request.policy.max_pending_orders_per_customer);
    let unpaid = pending.get(&request.user_id).copied().unwrap_or(0);
    if limit > 0 && unpaid >= limit {
        return Err(Error::TooManyPendingOrders {
            user_id: request.user_id,
            pending: unpaid,
        });
    }
    let mut items = Vec::with_capacity(request.lines.len());
    let mut currency: Option<String> = None;
    let mut total: i64 = 0;
    for &(product_id, quantity) in &request.lines {
        let product = products.get(&product_id).ok_or_else(|| {
            Error::validation("items", format!("product {product_id} does not exist"))
        })?;
        if !product.active {
            return Err(Error::validation(
                "items",
                format!("product {product_id} ({}) is not on sale", product.sku),
            ));
        }
        match &currency {
            None => currency = Some(product.currency.clone()),
            Some(c) if *c != product.currency => {
                return Err(Error::validation(
                    "items",
                    format!(
                        "all items must share one currency ({c} and {})",
                        product.currency
                    ),
                ));
            }
            Some(_) => {}
        }
        if product.stock < quantity {
            return Err(Error::InsufficientStock {
                product_id,
                sku: product.sku.clone(),
                requested: quantity,
                available: product.stock,
            });
        }
        total = product
            .price_cents
            .checked_mul(quantity)
            .and_then(|line| total.checked_add(line))
            .filter(|t| *t <= MAX_AMOUNT * 1000)
            .ok_or_else(|| Error::validation("items", "order total is too large"))?;
        items.push(OrderItem {
            product_id,
            sku: product.sku.clone(),
            name: product.name.clone(),
            quantity,
            unit_price_cents: product.price_cents,
        });
    }
    let currency = currency.unwrap_or_default();
    let provider = request.policy.default_payment_provider;
    if !provider.takes_currency(&currency) {
        return Err(Error::validation(
            "items",
            format!(
                "this shop takes payment through {provider}, which takes CNY only; the items are priced in {currency}"
            ),
        ));
    }
    for item in &items {
        if let Some(product) = products.get_mut(&item.product_id) {
            product.stock -= item.quantity;
        }
    }
    *pending.entry(request.user_id).or_insert(0) += 1;
    Ok((items, total, currency))
}

/// Writes the accepted orders: stock taken once per product, then the orders, items,
/// ledger rows, history rows, payments, keys, audit rows and events, each one statement.
async fn write_orders(
    tx: &mut db::Tx,
    dialect: db::Dialect,
    requests: &[&PlacementRequest],
    accepted: &[Accepted],
    taken: &HashMap<i64, i64>,
    now: Millis,
) -> Result<Vec<(usize, PlacedOrder)>> {
    let rows: Vec<_> = taken
        .iter()
        .map(|(product_id, quantity)| json!({"product_id": product_id, "quantity": quantity}))
        .collect();
    let after = db::placement::take_stock(tx, dialect, &json_text(json!(rows)), now).await?;

    let rows: Vec<_> = accepted
        .iter()
        .map(|a| {
            let r = requests[a.index];
            json!({"number": a.number, "user_id": r.user_id, "total_cents": a.total,
                   "currency": a.currency, "note": r.note,
                   "shipping_address": r.shipping_address.as_ref().map(ShippingAddress::to_json)})
        })
        .collect();
    let orders: HashMap<String, Order> =
        db::placement::insert_orders(tx, dialect, &json_text(json!(rows)), now)
            .await?
            .into_iter()
            .map(|o| (o.number.clone(), o))
            .collect();
    let order_of = |a: &Accepted| -> Result<&Order> {
        orders
            .get(&a.number)
            .ok_or_else(|| Error::Conflict("an order vanished while being placed".to_owned()))
    };

    let mut item_rows = Vec::new();
    let mut open_rows = Vec::new();
    let mut key_rows = Vec::new();
    for a in accepted {
        let r = requests[a.index];
        let order = order_of(a)?;
        let actor = r.actor.label();
        for item in &a.items {
            item_rows.push(json!({"order_id": order.id, "product_id": item.product_id,
                "sku": item.sku, "name": item.name, "quantity": item.quantity,
                "unit_price_cents": item.unit_price_cents, "actor": actor}));
        }
        let provider = r.policy.default_payment_provider;
        let merchant_ref =
            (provider != PaymentProvider::Manual).then(|| order.payment_reference(1));
        let provider_ref = merchant_ref
            .as_ref()
            .filter(|_| provider.ref_is_merchant_ref());
        open_rows.push(json!({
            "order_id": order.id, "actor": actor, "amount_cents": a.total,
            "expires_at": now + r.policy.payment_ttl_ms, "method": provider.method(),
            "provider": provider.as_str(), "merchant_ref": merchant_ref,
            "provider_ref": provider_ref,
        }));
        if let Some((key, _)) = &r.key {
            key_rows.push(json!({"user_id": r.key_owner(), "key": key, "order_id": order.id}));
        }
    }
    db::placement::insert_items(tx, dialect, &json_text(json!(item_rows)), now).await?;
    let payments: HashMap<i64, Payment> =
        db::placement::open_orders(tx, dialect, &json_text(json!(open_rows)), now)
            .await?
            .into_iter()
            .map(|p| (p.order_id, p))
            .collect();
    if !key_rows.is_empty() {
        db::placement::bind_keys(tx, dialect, &json_text(json!(key_rows))).await?;
    }

    let mut placed = Vec::with_capacity(accepted.len());
    let mut new_events = Vec::with_capacity(accepted.len() + after.len());
    let mut events_on = false;
    for a in accepted {
        let r = requests[a.index];
        events_on |= r.policy.events;
        let order = order_of(a)?.clone();
        let payment = payments
            .get(&order.id)
            .cloned()
            .ok_or_else(|| Error::Conflict("a payment vanished while being placed".to_owned()))?;
        if r.actor.is_staff() {
            audit::record_for(
                tx,
                r.actor,
                "order.create",
                Object::Order(order.id),
                json!({"user_id": r.user_id, "items": a.items.iter()
                    .map(|i| json!({"product_id": i.product_id, "quantity": i.quantity}))
                    .collect::<Vec<_>>()}),
                r.request_id.clone(),
                now,
            )
            .await?;
        }
        let details = OrderDetails {
            order,
            items: a.items.clone(),
            payments: vec![payment.clone()],
        };
        new_events.push(NewEvent::order(
            EventType::OrderCreated,
            &details,
            1,
            None,
            json!({
                "payment": payment,
                "unpaid_deadline": crate::domain::format_rfc3339(
                    details.order.created_at + r.policy.unpaid_timeout_ms),
            }),
        ));
        placed.push((
            a.index,
            PlacedOrder {
                order: details,
                payment,
            },
        ));
    }
    for product in &after {
        let delta = -taken.get(&product.id).copied().unwrap_or(0);
        new_events.extend(events::stock_events(product, delta));
    }
    events::record(tx, dialect, events_on, &new_events, now).await?;
    debug_assert!(
        placed
            .iter()
            .all(|(_, p)| p.order.order.status == OrderStatus::Pending)
    );
    Ok(placed)
}
