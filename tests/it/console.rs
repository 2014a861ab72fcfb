//! The staff console: its library reads (counters, dashboard, order search, expiring
//! orders, timeline, ledger balance, sweep preview, sessions) on both databases, its pages
//! over HTTP (sign-in, security headers, cross-site refusal, CSV, Chinese pages without an
//! English label), and, in `browser`, the whole console driven in headless Chromium.

mod browser;

use crate::api::TestApp;
use crate::helpers::{Backend, MINUTE, T0, TestShop};
use crate::on_both_databases;
use ordo::console::i18n;
use ordo::console::session::Refusal;
use ordo::domain::{Actor, OrderStatus, ProviderEvent, ProviderStatus, UserRole};
use ordo::events::endpoints::NewEndpoint;
use ordo::reports::{Happening, OrderSearch};
use ordo::sweep::{PreviewedRun, SweepTrigger};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};

on_both_databases!(
    counters_follow_every_order_change,
    dashboard_counts_and_series,
    order_search_filters_and_pages,
    expiring_orders_come_soonest_first,
    timeline_merges_history_events_and_deliveries,
    ledger_rows_carry_the_running_balance,
    sweep_runs_only_the_previewed_set,
    sessions_open_for_staff_tokens_only_and_end,
    console_pages_over_http,
    webhook_and_token_forms,
    chinese_pages_show_no_english_label,
    customers_addresses_and_packing_slips,
    times_in_the_shops_zone_and_money_in_its_currency,
);

/// An address in Shanghai.
pub fn shanghai_address() -> ordo::domain::NewShippingAddress {
    ordo::domain::NewShippingAddress {
        name: "王小明".into(),
        phone: "138 0013 8000".into(),
        country: None,
        province: Some("上海市".into()),
        city: Some("上海市".into()),
        district: Some("浦东新区".into()),
        town: None,
        line: "世纪大道 100 号 12 楼".into(),
        postal_code: Some("200120".into()),
    }
}

/// A customer made by the shop's backend, with a phone.
pub async fn shop_customer(shop: &TestShop, external_id: &str) -> ordo::domain::Customer {
    shop.ordo
        .upsert_customer(
            shop.staff(),
            external_id,
            &ordo::customers::CustomerChange {
                display_name: "王小明".into(),
                phone: Some(Some("138 0013 8000".into())),
                wechat_openid: None,
            },
        )
        .await
        .unwrap()
        .0
}

/// A sweep as the scheduler runs it (30 minutes' timeout); its summary.
pub async fn scheduled_sweep(shop: &TestShop) -> ordo::sweep::SweepSummary {
    shop.ordo
        .run_sweep(
            Actor::Scheduler,
            SweepTrigger::Scheduler,
            &ordo::sweep::SweepRequest {
                timeout_minutes: 30,
                dry_run: false,
                batch_size: 100,
                limit: None,
                now: None,
            },
            &std::sync::atomic::AtomicBool::new(false),
            |_, _| {},
        )
        .await
        .expect("sweep")
        .1
}

/// The counters kept by the triggers, as the console reads them, against a real count.
async fn assert_counters(shop: &TestShop) {
    let counted = shop
        .ordo
        .order_status_counts(shop.staff())
        .await
        .expect("counts");
    for (status, n) in counted {
        let sql = format!(
            "SELECT COUNT(*) FROM orders WHERE status = '{}'",
            status.as_str()
        );
        let actual: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(shop.ordo.db.pool())
            .await
            .expect("count");
        assert_eq!(n, actual, "{status}");
    }
    shop.assert_check_clean().await;
}

async fn counters_follow_every_order_change(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let p = shop.product(100, 250).await;
    let a = shop.order(&[(p.id, 1)]).await;
    let b = shop.order(&[(p.id, 2)]).await;
    let c = shop.order(&[(p.id, 3)]).await;
    let _d = shop.order(&[(p.id, 1)]).await;
    assert_counters(&shop).await;
    shop.pay(&a).await;
    shop.pay(&b).await;
    shop.ordo
        .cancel_order(shop.staff(), c.order.order.id, Some("out of stock".into()))
        .await
        .unwrap();
    shop.ordo
        .transition(
            shop.staff(),
            b.order.order.id,
            OrderStatus::Shipped,
            &ordo::orders::TransitionInput {
                carrier: Some("DHL".into()),
                tracking_number: Some("1".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_counters(&shop).await;
    // The sweep's set-based batch moves many orders in one statement.
    shop.ordo.clock.advance(31 * MINUTE);
    scheduled_sweep(&shop).await;
    assert_counters(&shop).await;
    let counts = shop.ordo.order_status_counts(shop.staff()).await.unwrap();
    let of = |s: OrderStatus| counts.iter().find(|(x, _)| *x == s).unwrap().1;
    assert_eq!(of(OrderStatus::Paid), 1);
    assert_eq!(of(OrderStatus::Shipped), 1);
    assert_eq!(of(OrderStatus::Cancelled), 2);
    assert_eq!(of(OrderStatus::Pending), 0);
    if backend == Backend::Postgres {
        // Folding the appended rows changes no count and leaves one row per key.
        sqlx::query("SELECT ordo_fold_order_counters()")
            .execute(shop.ordo.db.pool())
            .await
            .unwrap();
        assert_eq!(
            shop.ordo.order_status_counts(shop.staff()).await.unwrap(),
            counts
        );
        assert!(shop.count("SELECT COUNT(*) FROM order_status_counts").await <= 7);
        assert_counters(&shop).await;
    }
    // Customers may not read them.
    assert!(shop.ordo.order_status_counts(shop.owner()).await.is_err());
}

async fn dashboard_counts_and_series(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let p = shop.product(10, 1_000).await;
    let gone = shop.product(1, 500).await;
    // Yesterday: one order, paid.
    shop.ordo.clock.set(T0 - 24 * 60 * MINUTE);
    let yesterday = shop.order(&[(p.id, 2)]).await;
    shop.pay(&yesterday).await;
    // Today: one order 20 minutes old (deadline in 10 minutes), one just placed, one
    // that took the last unit of `gone`.
    shop.ordo.clock.set(T0 - 20 * MINUTE);
    shop.order(&[(p.id, 1)]).await;
    shop.ordo.clock.set(T0);
    shop.order(&[(p.id, 1)]).await;
    let late = shop.order(&[(gone.id, 1)]).await;
    // A late payment: cancelled, then paid.
    shop.ordo
        .cancel_order(shop.staff(), late.order.order.id, Some("mistake".into()))
        .await
        .unwrap();
    shop.ordo
        .adjust_stock(shop.staff(), gone.id, -1, Some("broken"))
        .await
        .unwrap();
    shop.pay(&late).await;

    let board = shop
        .ordo
        .dashboard(shop.staff(), chrono_tz::Tz::UTC)
        .await
        .expect("dashboard");
    assert_eq!(board.unpaid, 2);
    assert_eq!(
        board.expiring_soon, 1,
        "the order whose deadline is 10 minutes away"
    );
    assert_eq!(board.to_refund, 1);
    assert_eq!(board.out_of_stock, 1);
    assert_eq!(board.days.len(), 30);
    let today = board.days[29];
    let before = board.days[28];
    assert_eq!((before.placed, before.paid_cents), (1, 2_000));
    assert_eq!(today.placed, 3);
    assert_eq!(board.currency.as_deref(), Some("EUR"));
    assert_eq!(board.sweep_hours.len(), 48);
    // Under 5 minutes: the two placed at T0; 15–30 minutes: the one of 20 minutes.
    assert_eq!(board.backlog, [1, 0, 1, 0, 0, 0]);
    assert!(
        shop.ordo
            .dashboard(shop.owner(), chrono_tz::Tz::UTC)
            .await
            .is_err()
    );
}

async fn order_search_filters_and_pages(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let mug = shop.product(100, 100).await;
    let cap = shop.product(100, 100).await;
    let other = shop.another_customer().await;
    let mut ids = Vec::new();
    for i in 0..7 {
        shop.ordo.clock.set(T0 + i * 24 * 60 * MINUTE);
        let placed = shop
            .order(&[(if i % 2 == 0 { mug.id } else { cap.id }, 1)])
            .await;
        ids.push(placed.order.order.id);
    }
    shop.ordo.clock.set(T0 + 7 * 24 * 60 * MINUTE);
    let theirs = shop
        .ordo
        .place_order(
            other.actor(),
            &ordo::domain::NewOrder::from_lines(other.id, &[(mug.id, 1)], None),
        )
        .await
        .unwrap();
    shop.ordo
        .cancel_order(shop.staff(), ids[0], Some("test".into()))
        .await
        .unwrap();
    let search = |s: OrderSearch| {
        let ordo = shop.ordo.clone();
        let staff = shop.staff();
        async move {
            ordo.search_orders(staff, &s)
                .await
                .unwrap()
                .iter()
                .map(|o| o.id)
                .collect::<Vec<_>>()
        }
    };
    let all = OrderSearch {
        limit: 100,
        ..OrderSearch::default()
    };
    let mut newest_first: Vec<i64> = ids.iter().rev().copied().collect();
    newest_first.insert(0, theirs.order.order.id);
    assert_eq!(search(all.clone()).await, newest_first);
    assert_eq!(
        search(OrderSearch {
            status: Some(OrderStatus::Cancelled),
            ..all.clone()
        })
        .await,
        vec![ids[0]]
    );
    assert_eq!(
        search(OrderSearch {
            user_id: Some(other.id),
            ..all.clone()
        })
        .await,
        vec![theirs.order.order.id]
    );
    assert_eq!(
        search(OrderSearch {
            product_id: Some(cap.id),
            ..all.clone()
        })
        .await,
        vec![ids[5], ids[3], ids[1]]
    );
    assert_eq!(
        search(OrderSearch {
            created_from: Some(T0 + 2 * 24 * 60 * MINUTE),
            created_until: Some(T0 + 4 * 24 * 60 * MINUTE),
            product_id: Some(mug.id),
            status: Some(OrderStatus::Pending),
            ..all.clone()
        })
        .await,
        vec![ids[2]]
    );
    // Pages of three, by the (created_at, id) cursor, cover everything once.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = shop
            .ordo
            .search_orders(
                shop.staff(),
                &OrderSearch {
                    before,
                    limit: 3,
                    ..OrderSearch::default()
                },
            )
            .await
            .unwrap();
        seen.extend(page.iter().map(|o| o.id));
        if page.len() < 3 {
            break;
        }
        before = page.last().map(|o| (o.created_at, o.id));
    }
    assert_eq!(seen, newest_first);
    assert!(shop.ordo.search_orders(shop.owner(), &all).await.is_err());
}

async fn expiring_orders_come_soonest_first(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let p = shop.product(100, 100).await;
    shop.ordo.clock.set(T0 - 40 * MINUTE);
    let overdue = shop.order(&[(p.id, 2)]).await;
    shop.ordo.clock.set(T0 - 10 * MINUTE);
    let soon = shop.order(&[(p.id, 1)]).await;
    shop.ordo.clock.set(T0);
    let paid = shop.order(&[(p.id, 1)]).await;
    shop.pay(&paid).await;
    let list = shop.ordo.expiring_orders(shop.staff(), 10).await.unwrap();
    let got: Vec<(i64, i64, i64)> = list
        .iter()
        .map(|e| (e.order.id, e.deadline, e.units))
        .collect();
    assert_eq!(
        got,
        vec![
            (overdue.order.order.id, T0 - 10 * MINUTE, 2),
            (soon.order.order.id, T0 + 20 * MINUTE, 1),
        ]
    );
}

async fn timeline_merges_history_events_and_deliveries(backend: Backend) {
    let shop = TestShop::new(backend).await;
    shop.ordo
        .create_endpoint(
            shop.staff(),
            &NewEndpoint {
                url: "https://8.8.8.8/hook".into(),
                ..NewEndpoint::default()
            },
        )
        .await
        .expect("endpoint");
    let p = shop.product(10, 100).await;
    let placed = shop.order(&[(p.id, 1)]).await;
    shop.ordo.clock.advance(MINUTE);
    shop.ordo
        .cancel_order(shop.staff(), placed.order.order.id, Some("asked".into()))
        .await
        .unwrap();
    let timeline = shop
        .ordo
        .order_timeline(shop.staff(), placed.order.order.id)
        .await
        .unwrap();
    let kinds: Vec<String> = timeline
        .iter()
        .map(|e| match &e.what {
            Happening::Status(h) => format!("status:{}", h.to_status),
            Happening::Event { kind, .. } => format!("event:{kind}"),
            Happening::Delivery { event_type, .. } => format!("delivery:{event_type}"),
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            "status:pending",
            "event:order.created",
            "delivery:order.created",
            "status:cancelled",
            "event:order.cancelled",
            "delivery:order.cancelled",
        ]
    );
    assert!(timeline.windows(2).all(|w| w[0].at <= w[1].at));
    assert!(
        shop.ordo
            .order_timeline(shop.staff(), 999_999)
            .await
            .is_err()
    );
}

async fn ledger_rows_carry_the_running_balance(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let p = shop.product(10, 100).await;
    shop.ordo
        .adjust_stock(shop.staff(), p.id, 5, Some("delivery"))
        .await
        .unwrap();
    let a = shop.order(&[(p.id, 3)]).await;
    shop.order(&[(p.id, 2)]).await;
    shop.ordo
        .cancel_order(shop.staff(), a.order.order.id, None)
        .await
        .unwrap();
    shop.ordo
        .adjust_stock(shop.staff(), p.id, -4, Some("broken"))
        .await
        .unwrap();
    // Oldest first the balances are 10, 15, 12, 10, 13, 9; read newest first, two a page.
    let mut balances = Vec::new();
    let mut before = None;
    loop {
        let page = shop
            .ordo
            .product_ledger(shop.staff(), p.id, before, 2)
            .await
            .unwrap();
        balances.extend(page.iter().map(|r| (r.delta, r.balance_after)));
        if page.len() < 2 {
            break;
        }
        before = page.last().map(|r| r.id);
    }
    assert_eq!(
        balances,
        vec![(-4, 9), (3, 13), (-2, 10), (-3, 12), (5, 15), (10, 10)]
    );
    assert_eq!(shop.stock(p.id).await, 9);
    assert!(
        shop.ordo
            .product_ledger(shop.staff(), 424_242, None, 2)
            .await
            .is_err()
    );
}

async fn sweep_runs_only_the_previewed_set(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let mug = shop.product(100, 100).await;
    let cap = shop.product(100, 100).await;
    let first = shop.order(&[(mug.id, 2), (cap.id, 1)]).await;
    shop.ordo.clock.advance(10 * MINUTE);
    let second = shop.order(&[(mug.id, 4)]).await;
    shop.ordo.clock.advance(25 * MINUTE);
    // Only the first is due (35 minutes old); the second is 25 minutes old.
    let preview = shop.ordo.preview_sweep(shop.staff(), 30).await.unwrap();
    assert_eq!(preview.fingerprint.count, 1);
    assert_eq!(
        preview.orders.iter().map(|o| o.id).collect::<Vec<_>>(),
        vec![first.order.order.id]
    );
    let units: Vec<(i64, i64)> = preview.units.iter().map(|u| (u.0, u.3)).collect();
    assert_eq!(units, vec![(mug.id, 2), (cap.id, 1)]);
    assert_eq!(preview.total_units(), 3);
    // The second becomes due after the preview: running it is refused, with the new set.
    shop.ordo.clock.advance(10 * MINUTE);
    let outcome = shop
        .ordo
        .run_previewed_sweep(
            shop.staff(),
            SweepTrigger::Console,
            30,
            100,
            preview.fingerprint,
        )
        .await
        .unwrap();
    let fresh = match outcome {
        PreviewedRun::Changed(fresh) => fresh,
        PreviewedRun::Ran(_) => panic!("a stale preview ran"),
    };
    assert_eq!(fresh.fingerprint.count, 2);
    assert_eq!(
        shop.status(first.order.order.id).await,
        OrderStatus::Pending
    );
    // The fresh preview runs, and cancels exactly its orders.
    let ran = match shop
        .ordo
        .run_previewed_sweep(
            shop.staff(),
            SweepTrigger::Console,
            30,
            100,
            fresh.fingerprint,
        )
        .await
        .unwrap()
    {
        PreviewedRun::Ran(ran) => ran,
        PreviewedRun::Changed(_) => panic!("an unchanged preview was refused"),
    };
    let (run, summary) = *ran;
    assert_eq!((summary.cancelled, summary.units_released), (2, 7));
    assert_eq!(run.trigger, "console");
    assert_eq!(
        shop.status(second.order.order.id).await,
        OrderStatus::Cancelled
    );
    assert!(shop.ordo.preview_sweep(shop.owner(), 30).await.is_err());
    assert_counters(&shop).await;
}

async fn sessions_open_for_staff_tokens_only_and_end(backend: Backend) {
    let shop = TestShop::new(backend).await;
    let (id, session) = shop
        .ordo
        .open_console_session(&shop.staff_token)
        .await
        .unwrap()
        .expect("staff may sign in");
    assert_eq!(session.user.id, shop.staff.id);
    assert_eq!(id.len(), 64);
    // Only the hash is stored.
    let stored = shop.count("SELECT COUNT(*) FROM console_sessions").await;
    assert_eq!(stored, 1);
    let leaked: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM console_sessions WHERE id_hash = $1")
            .bind(&id)
            .fetch_one(shop.ordo.db.pool())
            .await
            .unwrap();
    assert_eq!(leaked, 0);
    assert_eq!(
        shop.ordo.console_session(&id).await.unwrap(),
        Some(session.clone())
    );
    assert_eq!(
        shop.ordo
            .open_console_session(&shop.customer_token)
            .await
            .unwrap()
            .unwrap_err(),
        Refusal::NotStaff
    );
    assert_eq!(
        shop.ordo
            .open_console_session("ordo_nope")
            .await
            .unwrap()
            .unwrap_err(),
        Refusal::Unknown
    );
    // 12 idle hours end it; activity keeps it.
    shop.ordo.clock.advance(11 * 60 * MINUTE);
    assert!(shop.ordo.console_session(&id).await.unwrap().is_some());
    shop.ordo.clock.advance(11 * 60 * MINUTE);
    assert!(shop.ordo.console_session(&id).await.unwrap().is_some());
    shop.ordo.clock.advance(12 * 60 * MINUTE + 1);
    assert!(shop.ordo.console_session(&id).await.unwrap().is_none());
    // A revoked token ends its sessions and cannot open new ones.
    let (id, session) = shop
        .ordo
        .open_console_session(&shop.staff_token)
        .await
        .unwrap()
        .unwrap();
    shop.ordo
        .revoke_token(Actor::Operator, session.token_id)
        .await
        .unwrap();
    assert!(shop.ordo.console_session(&id).await.unwrap().is_none());
    assert_eq!(
        shop.ordo
            .open_console_session(&shop.staff_token)
            .await
            .unwrap()
            .unwrap_err(),
        Refusal::Revoked
    );
    // An expired token.
    let (_, token) = shop
        .ordo
        .issue_token(
            Actor::Operator,
            &ordo::auth::NewToken {
                name: "short".into(),
                role: Some(UserRole::Staff),
                user_id: None,
                expires_in: Some(MINUTE),
            },
        )
        .await
        .unwrap();
    let (id, session) = shop
        .ordo
        .open_console_session(token.expose())
        .await
        .unwrap()
        .unwrap();
    shop.ordo.clock.advance(2 * MINUTE);
    assert!(shop.ordo.console_session(&id).await.unwrap().is_none());
    assert_eq!(
        shop.ordo
            .open_console_session(token.expose())
            .await
            .unwrap()
            .unwrap_err(),
        Refusal::Expired
    );
    // Signing in and out are audited.
    shop.ordo.close_console_session(&session).await.unwrap();
    let actions: Vec<String> = sqlx::query_scalar(
        "SELECT action FROM audit_log WHERE object_type = 'session' ORDER BY id",
    )
    .fetch_all(shop.ordo.db.pool())
    .await
    .unwrap();
    assert_eq!(
        actions,
        vec![
            "session.sign_in",
            "session.sign_in",
            "session.sign_in",
            "session.sign_out"
        ]
    );
}

/// A signed-in staff member's client: no cookie store (the tests carry the session by
/// hand) and no redirects followed (the tests look at them).
pub struct ConsoleClient {
    pub app: TestApp,
    pub client: reqwest::Client,
    pub cookie: String,
}

pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("ordo_session="))
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
}

impl ConsoleClient {
    pub async fn sign_in(backend: Backend) -> ConsoleClient {
        Self::sign_in_with(backend, |state| state).await
    }

    /// Signed in to a console whose state `configure` adjusts (a time zone, say).
    pub async fn sign_in_with(
        backend: Backend,
        configure: impl FnOnce(ordo::http::AppState) -> ordo::http::AppState,
    ) -> ConsoleClient {
        let app = TestApp::spawn_with(backend, configure).await;
        let client = crate::helpers::client_builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let response = client
            .post(format!("{}/console/login", app.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={}", app.shop.staff_token))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let cookie = session_cookie(response.headers()).expect("session cookie");
        ConsoleClient {
            app,
            client,
            cookie,
        }
    }

    pub async fn get(&self, path: &str, extra: &[(&str, &str)]) -> (StatusCode, HeaderMap, String) {
        let mut request = self
            .client
            .get(format!("{}{path}", self.app.base))
            .header("cookie", &self.cookie);
        for (k, v) in extra {
            request = request.header(*k, *v);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        (status, headers, response.text().await.unwrap())
    }

    pub async fn post(
        &self,
        path: &str,
        body: &str,
        extra: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, String) {
        let mut request = self
            .client
            .post(format!("{}{path}", self.app.base))
            .header("cookie", &self.cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_owned());
        for (k, v) in extra {
            request = request.header(*k, *v);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        (status, headers, response.text().await.unwrap())
    }
}

/// Every page of the console, for a shop with one order, one product and one customer.
pub fn every_page(order: i64, product: i64, customer: i64) -> Vec<String> {
    [
        "/console/",
        "/console/orders",
        "/console/customers",
        "/console/packing-slips",
        "/console/orders?status=pending",
        "/console/expiring",
        "/console/sweep",
        "/console/late-payments",
        "/console/products",
        "/console/webhooks",
        "/console/tokens",
        "/console/audit",
    ]
    .into_iter()
    .map(str::to_owned)
    .chain([
        format!("/console/orders/{order}"),
        format!("/console/orders/{order}/packing-slip"),
        format!("/console/products/{product}"),
        format!("/console/customers/{customer}"),
    ])
    .collect()
}

async fn console_pages_over_http(backend: Backend) {
    let console = ConsoleClient::sign_in(backend).await;
    let app = &console.app;
    let shop = &app.shop;
    let p = shop.product(10, 1_250).await;
    let placed = shop
        .ordo
        .place_order(
            shop.owner(),
            &ordo::domain::NewOrder::from_lines(
                shop.customer.id,
                &[(p.id, 2)],
                Some("=HYPERLINK(\"http://x\") <script>alert(1)</script>".into()),
            ),
        )
        .await
        .unwrap();
    let id = placed.order.order.id;

    // Strangers go to sign in; the sign-in page is public.
    let stranger = console
        .client
        .get(format!("{}/console/orders", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(stranger.status(), StatusCode::SEE_OTHER);
    assert_eq!(stranger.headers()[LOCATION], "/console/login");
    let (status, _, login) = console.get("/console/login?signed_out=1", &[]).await;
    // Signed in already: straight to the dashboard.
    assert_eq!(status, StatusCode::SEE_OTHER, "{login}");

    for path in every_page(id, p.id, shop.customer.id) {
        let (status, headers, body) = console.get(&path, &[]).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["referrer-policy"], "same-origin");
        // No inline script or style in the markup either.
        assert!(
            !body.contains("<script>") && !body.contains("style="),
            "{path}"
        );
        // What a customer typed is escaped.
        assert!(!body.contains("<script>alert(1)"), "{path}");
    }
    let (_, _, order_page) = console.get(&format!("/console/orders/{id}"), &[]).await;
    assert!(order_page.contains("&#60;script&#62;alert(1)&#60;/script&#62;"));

    // Search by number jumps to the order; an unknown number says so.
    let (status, headers, _) = console
        .get(
            &format!("/console/orders?q={}", placed.order.order.number),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[LOCATION], format!("/console/orders/{id}"));
    let (status, _, _) = console.get("/console/orders?q=ORD-NOPE", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = console.get("/console/orders?customer=abc", &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The CSV of the current filter: an attachment whose cells are never formulas.
    let (status, headers, csv) = console.get("/console/orders.csv?status=pending", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(
        lines[1].contains("\"'=HYPERLINK(\"\"http://x\"\")"),
        "{csv}"
    );

    // A forged cross-site post is refused and changes nothing.
    for forged in [
        vec![("origin", "https://evil.example")],
        vec![("sec-fetch-site", "cross-site")],
    ] {
        let (status, _, _) = console
            .post(
                &format!("/console/orders/{id}/cancel"),
                "reason=forged",
                &forged,
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    assert_eq!(shop.status(id).await, OrderStatus::Pending);

    // The same post from the console's own page cancels, as the API would.
    let origin = app.base.clone();
    let (status, headers, _) = console
        .post(
            &format!("/console/orders/{id}/cancel"),
            "reason=customer+called",
            &[("origin", &origin), ("sec-fetch-site", "same-origin")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        headers[LOCATION],
        format!("/console/orders/{id}?done=moved")
    );
    assert_eq!(shop.status(id).await, OrderStatus::Cancelled);
    assert_eq!(shop.stock(p.id).await, 10);
    let audited = shop
        .count("SELECT COUNT(*) FROM audit_log WHERE action = 'order.cancel' AND request_id IS NOT NULL")
        .await;
    assert_eq!(audited, 1);
    // A move the lifecycle refuses is a page with the reason, not a change.
    let (status, _, body) = console
        .post(
            &format!("/console/orders/{id}/ship"),
            "carrier=DHL&tracking_number=1",
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body.contains("cannot make that move"), "{body}");

    // A customer token cannot sign in.
    let response = console
        .client
        .post(format!("{}/console/login", app.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={}", shop.customer_token))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(session_cookie(response.headers()).is_none());
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("Customer tokens cannot sign in")
    );

    // Behind an HTTPS proxy the cookie is Secure.
    let response = console
        .client
        .post(format!("{}/console/login", app.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-forwarded-proto", "https")
        .body(format!("token={}", shop.staff_token))
        .send()
        .await
        .unwrap();
    let cookie = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.contains("Secure")
            && cookie.contains("Path=/console"),
        "{cookie}"
    );

    // Signing out ends the session.
    let (status, _, _) = console.post("/console/logout", "", &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, headers, _) = console.get("/console/", &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[LOCATION], "/console/login");
}

/// The visible text of a page: tags, scripts and styles removed, entities of the
/// catalogue's punctuation decoded.
pub fn visible_text(html: &str) -> String {
    let mut text = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        text.push_str(&rest[..start]);
        text.push(' ');
        rest = &rest[start..];
        let end = rest.find('>').map_or(rest.len(), |e| e + 1);
        let tag = &rest[..end];
        // Attributes people read: labels for screen readers and placeholders.
        for attribute in ["aria-label=\"", "placeholder=\""] {
            if let Some(at) = tag.find(attribute) {
                let value = &tag[at + attribute.len()..];
                text.push_str(value.split('"').next().unwrap_or(""));
                text.push(' ');
            }
        }
        rest = &rest[end..];
    }
    text.push_str(rest);
    text.replace("&#39;", "'")
        .replace("&#34;", "\"")
        .replace("&#60;", "<")
        .replace("&#62;", ">")
        .replace("&#38;", "&")
}

/// The English labels a Chinese page shows, if any: every catalogue text (its fixed parts,
/// for texts with placeholders) long enough not to be a unit or a number. A label left
/// untranslated (its Chinese text the English one) counts too. A name both languages write
/// alike (`Stripe`, kept in its Chinese label `Stripe 支付`) is not an English label.
pub fn english_labels_in(text: &str) -> Vec<&'static str> {
    let mut found = Vec::new();
    for (en, zh) in i18n::LABELS {
        if zh != en && zh.contains(en) {
            continue;
        }
        let fragments = en
            .split(['{', '}'])
            .enumerate()
            .filter(|(i, _)| i % 2 == 0)
            .map(|(_, f)| {
                f.trim_matches(|c: char| c.is_whitespace() || c == ':' || c == '.' || c == ',')
            })
            .filter(|f| f.chars().filter(|c| c.is_alphabetic()).count() >= 4);
        for fragment in fragments {
            if text.contains(fragment) {
                found.push(*en);
                break;
            }
        }
    }
    found
}

async fn chinese_pages_show_no_english_label(backend: Backend) {
    let console = ConsoleClient::sign_in(backend).await;
    let shop = &console.app.shop;
    let p = shop.product(3, 990).await;
    let mut new = shop.new_order(&[(p.id, 1)]);
    new.shipping_address = Some(shanghai_address());
    let placed = shop.ordo.place_order(shop.owner(), &new).await.unwrap();
    let late = shop.order(&[(p.id, 1)]).await;
    shop.ordo
        .cancel_order(shop.staff(), late.order.order.id, Some("重复下单".into()))
        .await
        .unwrap();
    shop.ordo
        .apply_provider_event(&ProviderEvent {
            event_id: "evt-late".into(),
            payment_id: late.payment.id,
            status: ProviderStatus::Succeeded,
            amount_cents: late.payment.amount_cents,
        })
        .await
        .unwrap();
    shop.ordo.clock.advance(45 * MINUTE);
    for path in every_page(placed.order.order.id, p.id, shop.customer.id) {
        let (status, _, zh) = console
            .get(&path, &[("accept-language", "zh-CN,zh;q=0.9,en;q=0.5")])
            .await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(zh.contains("<html lang=\"zh-CN\">"), "{path}");
        let leaked = english_labels_in(&visible_text(&zh));
        assert!(leaked.is_empty(), "{path} shows English labels: {leaked:?}");
        // The same page in English does show them (the check can fail).
        let (_, _, en) = console.get(&path, &[("accept-language", "en")]).await;
        assert!(!english_labels_in(&visible_text(&en)).is_empty(), "{path}");
    }
    // The switch is remembered in a cookie and overrides Accept-Language.
    let (status, headers, _) = console
        .post("/console/lang", "lang=zh-CN&back=%2Fconsole%2Forders", &[])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[LOCATION], "/console/orders");
    let lang_cookie = headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("ordo_lang="))
        .and_then(|v| v.split(';').next())
        .unwrap()
        .to_owned();
    let response = console
        .client
        .get(format!("{}/console/", console.app.base))
        .header("cookie", format!("{}; {lang_cookie}", console.cookie))
        .header("accept-language", "en")
        .send()
        .await
        .unwrap();
    assert!(response.text().await.unwrap().contains("仪表盘"));
    // A switch never sends anyone off the console.
    let (_, headers, _) = console
        .post(
            "/console/lang",
            "lang=en&back=https%3A%2F%2Fevil.example%2F",
            &[],
        )
        .await;
    assert_eq!(headers[LOCATION], "/console/");
}

async fn webhook_and_token_forms(backend: Backend) {
    let console = ConsoleClient::sign_in(backend).await;
    let shop = &console.app.shop;
    // A new endpoint: its secret is shown once, on the answer to the form.
    let (status, _, page) = console
        .post(
            "/console/webhooks",
            "url=https%3A%2F%2F8.8.8.8%2Fhook&description=shop+%3Cb%3Eintegration%3C%2Fb%3E&event_types=order.paid%2C+order.expired&ordered=1",
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("whsec_"), "{page}");
    assert!(page.contains("&#60;b&#62;integration") && !page.contains("<b>integration"));
    let (_, _, again) = console.get("/console/webhooks", &[]).await;
    assert!(!again.contains("whsec_"), "the secret is shown only once");
    let endpoints = shop.ordo.endpoints(shop.staff()).await.unwrap();
    assert_eq!(
        endpoints[0].event_types.as_deref(),
        Some(&["order.expired".to_owned(), "order.paid".to_owned()][..])
    );
    // A bad URL is a page with the field named, not a new endpoint.
    let (status, _, page) = console
        .post("/console/webhooks", "url=ftp%3A%2F%2Fexample.com", &[])
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{page}");
    assert!(page.contains("Check the field url"), "{page}");

    // A delivery of the endpoint, redelivered from the list filtered by status.
    let p = shop.product(5, 100).await;
    let placed = shop.order(&[(p.id, 1)]).await;
    shop.pay(&placed).await;
    let (status, _, list) = console.get("/console/webhooks?status=pending", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let deliveries = shop
        .ordo
        .deliveries(
            shop.staff(),
            &ordo::events::endpoints::DeliveryFilter {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(deliveries.len(), 1, "only order.paid is subscribed");
    let delivery = deliveries[0].id;
    assert!(list.contains(&format!(
        "/console/webhooks/deliveries/{delivery}/redeliver"
    )));
    let (status, headers, _) = console
        .post(
            &format!("/console/webhooks/deliveries/{delivery}/redeliver"),
            "",
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        headers[LOCATION],
        format!("/console/webhooks?redelivered={delivery}")
    );
    let redelivered = shop
        .count("SELECT COUNT(*) FROM audit_log WHERE action = 'webhook_delivery.redeliver'")
        .await;
    assert_eq!(redelivered, 1);

    // A token, shown once; then revoked.
    let (status, _, page) = console
        .post(
            "/console/tokens",
            "name=packing+station&role=staff&expires_days=30",
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let token = page
        .split("id=\"new-token\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .expect("the new token on the page")
        .to_owned();
    let who = shop
        .ordo
        .authenticate(&token)
        .await
        .expect("the token works");
    assert_eq!(who.user.role, UserRole::Staff);
    let (status, headers, _) = console
        .post(&format!("/console/tokens/{}/revoke", who.token_id), "", &[])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        headers[LOCATION],
        format!("/console/tokens?revoked={}", who.token_id)
    );
    assert!(shop.ordo.authenticate(&token).await.is_err());
    // Revoking the token this session was opened with ends the session.
    let mine = shop
        .ordo
        .authenticate(&shop.staff_token)
        .await
        .unwrap()
        .token_id;
    let (_, headers, _) = console
        .post(&format!("/console/tokens/{mine}/revoke"), "", &[])
        .await;
    assert_eq!(headers[LOCATION], "/console/login");
    let (status, headers, _) = console.get("/console/tokens", &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[LOCATION], "/console/login");
}

async fn customers_addresses_and_packing_slips(backend: Backend) {
    let console = ConsoleClient::sign_in(backend).await;
    let shop = &console.app.shop;
    let p = shop.product(10, 1_250).await;
    let customer = shop_customer(shop, "shop-user-1").await;
    let mut new = ordo::domain::NewOrder::from_lines(customer.id, &[(p.id, 2)], None);
    new.shipping_address = Some(shanghai_address());
    let buyer = Actor::Customer(customer.id);
    let paid = shop.ordo.place_order(buyer, &new).await.unwrap();
    shop.pay(&paid).await;
    let id = paid.order.order.id;
    let pending = shop.ordo.place_order(buyer, &new).await.unwrap();

    // Customers: found by name, phone or external id; one customer's page.
    for q in ["%E7%8E%8B", "13800138000", "shop-user-1"] {
        let (status, _, page) = console.get(&format!("/console/customers?q={q}"), &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            page.contains(&format!("/console/customers/{}", customer.id)),
            "{q}: {page}"
        );
    }
    let (_, _, none) = console.get("/console/customers?q=nobody", &[]).await;
    assert!(none.contains("No customers match."));
    let (status, _, page) = console
        .get(&format!("/console/customers/{}", customer.id), &[])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("138 0013 8000") && page.contains("shop-user-1"));
    assert!(page.contains(&paid.order.order.number));
    // The order list names the customer; the order page shows name, phone and address,
    // and each line as it was ordered.
    let (_, _, list) = console.get("/console/orders", &[]).await;
    assert!(list.contains("王小明"), "the list names the customer");
    let (_, _, page) = console.get(&format!("/console/orders/{id}"), &[]).await;
    for shown in [
        "王小明",
        "138 0013 8000",
        "上海市 浦东新区",
        "世纪大道 100 号 12 楼",
        "200120",
        &p.sku,
        "Test product",
        "packing-slip",
    ] {
        assert!(page.contains(shown), "the order page lacks {shown}");
    }
    // Staff correct the address from the page.
    let (status, _, page) = console
        .post(
            &format!("/console/orders/{id}/address"),
            "name=%E7%8E%8B%E5%B0%8F%E6%98%8E&phone=138+0013+8000&country=CN&province=%E4%B8%8A%E6%B5%B7%E5%B8%82&city=%E4%B8%8A%E6%B5%B7%E5%B8%82&line=Room+5&postal_code=200120",
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("The shipping address was corrected."),
        "{page}"
    );
    assert!(page.contains("Room 5"));
    let (status, _, page) = console
        .post(
            &format!("/console/orders/{id}/address"),
            "name=x&phone=abc&line=y&province=a&city=b",
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("phone"));

    // Packing slips: one order's, and a sheet of every paid order (not the pending one).
    let (status, _, slip) = console
        .get(&format!("/console/orders/{id}/packing-slip"), &[])
        .await;
    assert_eq!(status, StatusCode::OK);
    for shown in [
        paid.order.order.number.as_str(),
        "Room 5",
        "王小明",
        &p.sku,
        "Packing slip",
    ] {
        assert!(slip.contains(shown), "the slip lacks {shown}");
    }
    assert!(
        !slip.contains("<nav"),
        "a slip prints without the console around it"
    );
    let (status, _, sheet) = console.get("/console/packing-slips", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(sheet.contains(&paid.order.order.number));
    assert!(!sheet.contains(&pending.order.order.number));
    assert!(sheet.contains("1 paid order(s)"));
    let (_, _, chosen) = console
        .get(
            &format!(
                "/console/packing-slips?ids={},{}",
                id, pending.order.order.id
            ),
            &[],
        )
        .await;
    assert!(chosen.contains(&pending.order.order.number));
    let (status, _, _) = console.get("/console/packing-slips?ids=1,x", &[]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // The CSV export carries the address.
    let (_, _, csv) = console.get("/console/orders.csv?status=paid", &[]).await;
    assert!(
        csv.lines()
            .next()
            .unwrap()
            .ends_with("ship_line,ship_postal_code")
    );
    assert!(csv.contains("\"Room 5\",\"200120\""), "{csv}");

    // Shipped: the address is no longer offered for correction.
    shop.ordo
        .transition(
            shop.staff(),
            id,
            OrderStatus::Shipped,
            &ordo::orders::TransitionInput {
                carrier: Some("SF".into()),
                tracking_number: Some("SF1".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (_, _, page) = console.get(&format!("/console/orders/{id}"), &[]).await;
    assert!(!page.contains("address-form"));
    let (status, _, _) = console
        .post(
            &format!("/console/orders/{id}/address"),
            "name=x&phone=13800138000&line=y&province=a&city=b",
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Erasure from the customer's page: confirmed, refused while an order is open (named),
    // then done.
    let erase = format!("/console/customers/{}/erase", customer.id);
    let (status, _, _) = console.post(&erase, "", &[]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _, page) = console.post(&erase, "confirm=yes", &[]).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(page.contains(&pending.order.order.number), "{page}");
    shop.ordo
        .cancel_order(shop.staff(), pending.order.order.id, None)
        .await
        .unwrap();
    shop.ordo
        .transition(
            shop.staff(),
            id,
            OrderStatus::Completed,
            &ordo::orders::TransitionInput::default(),
        )
        .await
        .unwrap();
    let (status, headers, _) = console.post(&erase, "confirm=yes", &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, _, page) = console.get(headers[LOCATION].to_str().unwrap(), &[]).await;
    assert!(page.contains("Personal data erased"), "{page}");
    assert!(page.contains("2 order address(es)"), "{page}");
    let (_, _, order_page) = console.get(&format!("/console/orders/{id}"), &[]).await;
    assert!(!order_page.contains("Room 5") && !order_page.contains("138 0013 8000"));
    assert!(order_page.contains("Erased with the customer"));
    shop.assert_check_clean().await;
}

async fn times_in_the_shops_zone_and_money_in_its_currency(backend: Backend) {
    let shanghai: chrono_tz::Tz = "Asia/Shanghai".parse().unwrap();
    let mut console =
        ConsoleClient::sign_in_with(backend, |s| s.with_locale(shanghai, Some("CNY"))).await;
    let tea = console
        .app
        .shop
        .ordo
        .create_product(
            console.app.shop.staff(),
            &ordo::domain::NewProduct {
                sku: "TEA".into(),
                name: "龙井".into(),
                price_cents: 1_200,
                currency: "CNY".into(),
                stock: 10,
            },
        )
        .await
        .unwrap();
    // 2026-11-25T23:30:00Z: 07:30 on the 26th in Shanghai.
    let late_evening = T0 + 14 * 60 * MINUTE + 30 * MINUTE;
    console.app.shop.ordo.clock.set(late_evening);
    let placed = console.app.shop.order(&[(tea.id, 1)]).await;
    console.app.shop.ordo.clock.set(late_evening + 90 * MINUTE);
    // Half a day on, the first session has ended: sign in again.
    let response = console
        .client
        .post(format!("{}/console/login", console.app.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={}", console.app.shop.staff_token))
        .send()
        .await
        .unwrap();
    console.cookie = session_cookie(response.headers()).expect("session cookie");
    let console = console;
    let shop = &console.app.shop;
    let (_, _, list) = console.get("/console/orders", &[]).await;
    assert!(list.contains("26 Nov 2026, 07:30 UTC+8"), "{list}");
    assert!(list.contains("¥12.00") && !list.contains("CN¥"), "{list}");
    let (_, _, page) = console
        .get(&format!("/console/orders/{}", placed.order.order.id), &[])
        .await;
    assert!(page.contains("26 Nov 2026, 07:30 UTC+8"));
    let (_, _, zh) = console
        .get(
            &format!("/console/orders/{}", placed.order.order.id),
            &[("accept-language", "zh-CN")],
        )
        .await;
    assert!(zh.contains("2026年11月26日 07:30 UTC+8"));
    // The dashboard counts it on the 26th, Shanghai's day.
    let (_, _, board) = console.get("/console/", &[]).await;
    assert!(board.contains("<title>26 Nov: 1</title>"), "{board}");
    assert!(board.contains("<title>25 Nov: 0</title>"), "{board}");
    let board = shop.ordo.dashboard(shop.staff(), shanghai).await.unwrap();
    assert_eq!(board.days.last().unwrap().placed, 1);
    let utc = shop
        .ordo
        .dashboard(shop.staff(), chrono_tz::Tz::UTC)
        .await
        .unwrap();
    assert_eq!(
        utc.days[utc.days.len() - 2].placed,
        1,
        "in UTC it was the 25th"
    );
    // The sweep's hours are Shanghai's too.
    shop.ordo.clock.set(late_evening + 10 * MINUTE);
    shop.order(&[(tea.id, 1)]).await;
    shop.ordo.clock.set(late_evening + 50 * MINUTE);
    scheduled_sweep(shop).await;
    let board = shop.ordo.dashboard(shop.staff(), shanghai).await.unwrap();
    let (hour, n) = board.sweep_hours.last().unwrap();
    assert_eq!(*n, 2, "both orders were overdue: {:?}", board.sweep_hours);
    assert_eq!(*hour, late_evening + 30 * MINUTE, "08:00 in Shanghai");
}
