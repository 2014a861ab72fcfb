//! Reports: the read-only views staff run the shop with (the console's dashboard, the order
//! search, the orders about to expire, one order's timeline, a product's ledger with its
//! running balance). Counts come from counters the database keeps, lists from indexes, so
//! none of them grows with the size of the orders table.

use crate::Ordo;
use crate::auth::require_staff;
use crate::db;
use crate::domain::{Actor, HistoryEntry, Millis, Order, OrderStatus};
use crate::error::{Error, Result};

pub use crate::db::console::{LedgerRow, OrderSearch, QuarterTotal};

/// The window of "expiring soon" on the dashboard.
pub const EXPIRING_WINDOW_MS: Millis = 15 * 60_000;
/// The age bands of the unpaid backlog: under 5 min, 5–15 min, 15–30 min, 30–60 min,
/// 1–6 h, over 6 h.
pub const BACKLOG_BOUNDS_MS: [Millis; 5] = [
    5 * 60_000,
    15 * 60_000,
    30 * 60_000,
    60 * 60_000,
    6 * 3_600_000,
];
/// Days in the daily charts, hours in the sweep chart.
pub const CHART_DAYS: i64 = 30;
pub const CHART_HOURS: i64 = 48;

const HOUR_MS: Millis = 3_600_000;
const QUARTER_MS: Millis = 900_000;

/// The instant a day starts in `tz` (its first moment, where a daylight-saving change
/// skips midnight).
pub fn day_start(tz: chrono_tz::Tz, day: chrono::NaiveDate) -> Millis {
    use chrono::TimeZone;
    (0..24)
        .find_map(|hour| {
            tz.from_local_datetime(&day.and_hms_opt(hour, 0, 0)?)
                .earliest()
        })
        .map_or(0, |t| t.timestamp_millis())
}

/// The day `ms` falls on in `tz`.
pub fn local_day(tz: chrono_tz::Tz, ms: Millis) -> chrono::NaiveDate {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .with_timezone(&tz)
        .date_naive()
}

/// One day of the daily charts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayPoint {
    /// When the day starts in the console's time zone.
    pub start: Millis,
    pub placed: i64,
    /// Paid revenue that day, in [`Dashboard::currency`].
    pub paid_cents: i64,
}

/// What the dashboard shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dashboard {
    pub unpaid: i64,
    /// Unpaid orders whose deadline falls within [`EXPIRING_WINDOW_MS`] from now.
    pub expiring_soon: i64,
    pub to_refund: i64,
    pub out_of_stock: i64,
    /// The last [`CHART_DAYS`] days, oldest first.
    pub days: Vec<DayPoint>,
    /// The currency the revenue chart counts: the one with the most revenue in the window
    /// (a shop sells in one currency, as a rule).
    pub currency: Option<String>,
    /// Orders the sweep cancelled per hour of the console's time zone, the last
    /// [`CHART_HOURS`] hours, oldest first: (start of the hour, orders).
    pub sweep_hours: Vec<(Millis, i64)>,
    /// Unpaid orders per age band of [`BACKLOG_BOUNDS_MS`].
    pub backlog: [i64; 6],
}

/// An unpaid order and when the sweep may cancel it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiringOrder {
    pub order: Order,
    pub units: i64,
    /// created_at + the unpaid timeout.
    pub deadline: Millis,
}

/// What happened to an order, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Happening {
    Status(HistoryEntry),
    Event {
        event_id: String,
        kind: String,
        seq: Option<i64>,
    },
    Delivery {
        id: i64,
        endpoint_id: i64,
        event_type: String,
        status: String,
        attempts: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineEntry {
    pub at: Millis,
    pub what: Happening,
}

/// Most events and deliveries one timeline shows.
const TIMELINE_LIMIT: i64 = 500;

impl Ordo {
    /// Orders per status, every status listed (staff).
    pub async fn order_status_counts(&self, actor: Actor) -> Result<Vec<(OrderStatus, i64)>> {
        require_staff(actor)?;
        let mut conn = self.db.pool().acquire().await?;
        let counted = db::console::status_counts(&mut conn).await?;
        Ok(OrderStatus::ALL
            .into_iter()
            .map(|status| {
                let n = counted
                    .iter()
                    .find(|(s, _)| s == status.as_str())
                    .map_or(0, |(_, n)| *n);
                (status, n)
            })
            .collect())
    }

    /// The dashboard's counts and chart series (staff), its days and hours those of `tz`.
    pub async fn dashboard(&self, actor: Actor, tz: chrono_tz::Tz) -> Result<Dashboard> {
        let counts = self.order_status_counts(actor).await?;
        let now = self.clock.now();
        let timeout = self.policy.unpaid_timeout_ms;
        let mut conn = self.db.pool().acquire().await?;
        let unpaid = counts
            .iter()
            .find(|(s, _)| *s == OrderStatus::Pending)
            .map_or(0, |(_, n)| *n);
        // Deadline in (now, now + window]: created in (now - timeout, now - timeout + window].
        let expiring_soon = db::console::count_pending_created(
            &mut conn,
            now - timeout,
            now - timeout + EXPIRING_WINDOW_MS,
        )
        .await?;
        let to_refund = db::payments::count_refund_required(&mut conn).await?;
        let out_of_stock = db::console::count_out_of_stock(&mut conn).await?;

        // The last CHART_DAYS days of the time zone, each from its own start (a day may
        // have 23 or 25 hours).
        let today = local_day(tz, now);
        let dates: Vec<chrono::NaiveDate> = (0..CHART_DAYS)
            .rev()
            .filter_map(|back| today.checked_sub_days(chrono::Days::new(back as u64)))
            .collect();
        let first_start = dates.first().map_or(now, |d| day_start(tz, *d));
        let totals =
            db::console::quarter_totals(&mut conn, first_start.div_euclid(QUARTER_MS)).await?;
        let mut revenue: Vec<(&str, i64)> = Vec::new();
        for t in &totals {
            match revenue.iter_mut().find(|(c, _)| *c == t.currency) {
                Some((_, sum)) => *sum += t.paid_cents,
                None => revenue.push((&t.currency, t.paid_cents)),
            }
        }
        let currency = revenue
            .iter()
            .max_by_key(|(_, sum)| *sum)
            .map(|(c, _)| (*c).to_owned());
        let mut days: Vec<DayPoint> = dates
            .iter()
            .map(|d| DayPoint {
                start: day_start(tz, *d),
                placed: 0,
                paid_cents: 0,
            })
            .collect();
        for t in &totals {
            let day = local_day(tz, t.quarter * QUARTER_MS);
            if let Some(i) = dates.iter().position(|d| *d == day) {
                days[i].placed += t.placed;
                if Some(&t.currency) == currency.as_ref() {
                    days[i].paid_cents += t.paid_cents;
                }
            }
        }

        // The hours of the time zone: from the start of the local hour now, back.
        let local_now = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(now)
            .unwrap_or_default()
            .with_timezone(&tz);
        use chrono::Timelike;
        let into_hour = i64::from(local_now.minute()) * 60_000
            + i64::from(local_now.second()) * 1000
            + i64::from(local_now.timestamp_subsec_millis());
        let this_hour = now - into_hour;
        let first_hour = this_hour - (CHART_HOURS - 1) * HOUR_MS;
        let per_quarter = db::sweep_runs::cancelled_per_quarter(
            &mut conn,
            first_hour.div_euclid(QUARTER_MS) * QUARTER_MS,
        )
        .await?;
        let mut sweep_hours: Vec<(Millis, i64)> = (0..CHART_HOURS)
            .map(|i| (first_hour + i * HOUR_MS, 0))
            .collect();
        for (quarter, n) in per_quarter {
            let at = quarter * QUARTER_MS;
            if at >= first_hour {
                let i = ((at - first_hour) / HOUR_MS) as usize;
                if let Some(slot) = sweep_hours.get_mut(i) {
                    slot.1 += n;
                }
            }
        }

        let bounds = BACKLOG_BOUNDS_MS.map(|age| now - age);
        let backlog = db::console::pending_by_age(&mut conn, &bounds).await?;
        Ok(Dashboard {
            unpaid,
            expiring_soon,
            to_refund,
            out_of_stock,
            days,
            currency,
            sweep_hours,
            backlog,
        })
    }

    /// Orders matching the console's filters, newest first (staff).
    pub async fn search_orders(&self, actor: Actor, search: &OrderSearch) -> Result<Vec<Order>> {
        require_staff(actor)?;
        if !(1..=10_000).contains(&search.limit) {
            return Err(Error::validation("limit", "must be between 1 and 10000"));
        }
        let mut conn = self.db.pool().acquire().await?;
        db::console::search_orders(&mut conn, search).await
    }

    /// Unpaid orders by deadline, soonest first (staff); overdue ones, which the sweep has
    /// yet to reach, come first.
    pub async fn expiring_orders(&self, actor: Actor, limit: i64) -> Result<Vec<ExpiringOrder>> {
        require_staff(actor)?;
        let mut conn = self.db.pool().acquire().await?;
        Ok(db::console::pending_oldest_first(&mut conn, limit)
            .await?
            .into_iter()
            .map(|(order, units)| ExpiringOrder {
                deadline: order.created_at + self.policy.unpaid_timeout_ms,
                order,
                units,
            })
            .collect())
    }

    /// One order's history rows, events and webhook deliveries merged by time (staff).
    pub async fn order_timeline(&self, actor: Actor, order_id: i64) -> Result<Vec<TimelineEntry>> {
        require_staff(actor)?;
        let mut conn = self.db.pool().acquire().await?;
        if db::orders::get(&mut conn, order_id).await?.is_none() {
            return Err(Error::NotFound { what: "order" });
        }
        let mut entries: Vec<(Millis, u8, TimelineEntry)> = Vec::new();
        for h in db::history::list(&mut conn, order_id).await? {
            entries.push((
                h.created_at,
                0,
                TimelineEntry {
                    at: h.created_at,
                    what: Happening::Status(h),
                },
            ));
        }
        for e in db::events::of_order(&mut conn, order_id)
            .await?
            .into_iter()
            .take(TIMELINE_LIMIT as usize)
        {
            entries.push((
                e.created_at,
                1,
                TimelineEntry {
                    at: e.created_at,
                    what: Happening::Event {
                        event_id: e.event_id,
                        kind: e.kind,
                        seq: e.seq,
                    },
                },
            ));
        }
        for d in db::console::deliveries_of_order(&mut conn, order_id, TIMELINE_LIMIT).await? {
            let at = d.last_attempt_at.unwrap_or(d.created_at);
            entries.push((
                at,
                2,
                TimelineEntry {
                    at,
                    what: Happening::Delivery {
                        id: d.id,
                        endpoint_id: d.endpoint_id,
                        event_type: d.event_type,
                        status: d.status,
                        attempts: d.attempts,
                    },
                },
            ));
        }
        // Same instant: the status change, then the event it wrote, then its deliveries.
        entries.sort_by_key(|(at, rank, _)| (*at, *rank));
        Ok(entries.into_iter().map(|(_, _, e)| e).collect())
    }

    /// A product's ledger, newest first, before the cursor `before_id`, each row with the
    /// stock right after it (staff).
    pub async fn product_ledger(
        &self,
        actor: Actor,
        product_id: i64,
        before_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<LedgerRow>> {
        require_staff(actor)?;
        let mut conn = self.db.pool().acquire().await?;
        if db::products::get(&mut conn, product_id).await?.is_none() {
            return Err(Error::NotFound { what: "product" });
        }
        db::console::ledger_page(&mut conn, product_id, before_id.unwrap_or(i64::MAX), limit).await
    }
}
