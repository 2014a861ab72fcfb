//! WeChat shipping information, on both databases, against doubles of WeChat Pay and of
//! WeChat's mini-program API: shipping an order paid through WeChat Pay JSAPI uploads its
//! shipping information (the transaction id, the logistics type, the tracking number, the
//! carrier's code, the payer's openid), retried on the webhook schedule until WeChat
//! accepts it, exactly once; the access token is kept until it expires, and renewed when
//! WeChat refuses it; staff send a given-up upload again (audited); nothing is uploaded for
//! other orders; and no upload holds the database while it waits for WeChat.

use crate::api::TestApp;
use crate::doubles::Fault;
use crate::doubles::wechat_miniprogram::{MiniProgramDouble, Paid};
use crate::doubles::wechatpay::WechatPayDouble;
use crate::helpers::{Backend, MINUTE, TestShop};
use crate::on_both_databases;
use crate::providers::{OPENID, settings_with};
use ordo::domain::{NewOrder, NewProduct, NewShippingAddress, OrderStatus, PaymentProvider};
use ordo::orders::TransitionInput;
use ordo::payments::OpenPayment;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::time::{Duration, Instant};

on_both_databases!(
    a_refused_upload_is_retried_until_wechat_accepts_it_once,
    a_refused_token_is_renewed,
    staff_send_a_given_up_upload_again,
    only_orders_paid_through_wechat_are_uploaded,
    an_upload_never_holds_the_database,
);

/// A shop that takes WeChat Pay and reports its shipments to WeChat, served over HTTP.
struct Rig {
    app: TestApp,
    wechat: WechatPayDouble,
    mini: MiniProgramDouble,
    _keys: tempfile::TempDir,
}

fn address() -> NewShippingAddress {
    NewShippingAddress {
        name: "王小明".into(),
        phone: "+86 138 0013 8000".into(),
        country: None,
        province: Some("上海市".into()),
        city: Some("上海市".into()),
        district: Some("浦东新区".into()),
        town: None,
        line: "世纪大道 100 号".into(),
        postal_code: Some("200120".into()),
    }
}

impl Rig {
    async fn new(backend: Backend) -> Rig {
        Rig::with(backend, true).await
    }

    /// `report`: whether the shop reports shipments (`wechat_app_secret` set).
    async fn with(backend: Backend, report: bool) -> Rig {
        let shop = TestShop::new(backend).await;
        let clock = shop.ordo.clock.clone();
        let wechat = WechatPayDouble::start(clock.clone()).await;
        let mini = MiniProgramDouble::start(clock.clone()).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let keys = tempfile::tempdir().unwrap();
        let mut pairs = wechat.settings(keys.path());
        if report {
            pairs.extend(mini.settings());
        }
        pairs.push(("public_url", base.clone()));
        pairs.push(("provider_timeout_seconds", "2".to_owned()));
        let providers =
            ordo::payments::load_providers(&settings_with(&pairs), clock).expect("providers");
        let ordo = shop.ordo.clone().with_providers(providers);
        let mut shop = shop;
        shop.ordo = ordo;
        let state = ordo::http::AppState::new(shop.ordo.clone()).with_webhook_secret("secret");
        tokio::spawn(ordo::http::serve(listener, state, std::future::pending()));
        Rig {
            app: TestApp {
                shop,
                base,
                client: crate::helpers::client(),
            },
            wechat,
            mini,
            _keys: keys,
        }
    }

    fn shop(&self) -> &TestShop {
        &self.app.shop
    }

    /// An order with an address, paid through WeChat Pay JSAPI: (order id, transaction id).
    async fn paid_order(&self) -> (i64, String) {
        let shop = self.shop();
        let product = shop
            .ordo
            .create_product(
                shop.staff(),
                &NewProduct {
                    sku: format!("TEA-{}", crate::doubles::random(8)),
                    name: "明前龙井".into(),
                    price_cents: 16_800,
                    currency: "CNY".into(),
                    stock: 100,
                },
            )
            .await
            .unwrap();
        let mut new = NewOrder::from_lines(shop.customer.id, &[(product.id, 2)], None);
        new.shipping_address = Some(address());
        let placed = shop.ordo.place_order(shop.owner(), &new).await.unwrap();
        let id = placed.order.order.id;
        let opened = shop
            .ordo
            .open_payment(
                shop.owner(),
                id,
                &OpenPayment {
                    provider: Some(PaymentProvider::Wechatpay),
                    openid: Some(OPENID.to_owned()),
                },
            )
            .await
            .expect("opened at WeChat Pay");
        let out_trade_no = opened.payment.provider_ref.expect("out_trade_no");
        let answered = self.wechat.pay(&out_trade_no).await;
        assert!(matches!(answered, Some(200 | 204)), "{answered:?}");
        assert_eq!(shop.status(id).await, OrderStatus::Paid);
        let txn = self
            .wechat
            .txn(&out_trade_no)
            .and_then(|t| t.transaction_id)
            .expect("a transaction id");
        self.mini.knows(Paid {
            transaction_id: txn.clone(),
            out_trade_no,
            openid: OPENID.to_owned(),
        });
        (id, txn)
    }

    async fn ship(&self, order_id: i64, carrier: &str) {
        self.shop()
            .ordo
            .transition(
                self.shop().staff(),
                order_id,
                OrderStatus::Shipped,
                &TransitionInput {
                    carrier: Some(carrier.into()),
                    tracking_number: Some(format!("SF{order_id:013}")),
                    ..TransitionInput::default()
                },
            )
            .await
            .expect("shipped");
    }

    async fn upload(&self, order_id: i64) -> Value {
        let (status, order) = self
            .app
            .call(
                Method::GET,
                &format!("/api/v1/orders/{order_id}"),
                self.app.staff(),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{order}");
        let upload = self
            .shop()
            .ordo
            .shipping_upload(self.shop().staff(), order_id)
            .await
            .unwrap();
        serde_json::to_value(upload).unwrap()
    }

    async fn round(&self) -> usize {
        self.shop()
            .ordo
            .upload_shipping_once()
            .await
            .expect("a round")
    }
}

async fn a_refused_upload_is_retried_until_wechat_accepts_it_once(backend: Backend) {
    let rig = Rig::new(backend).await;
    let shop = rig.shop();
    let (id, txn) = rig.paid_order().await;
    rig.mini
        .refuse_next(&[(-1, "system error"), (10060012, "系统繁忙，请稍后重试")]);
    rig.ship(id, "顺丰速运").await;
    let upload = rig.upload(id).await;
    assert_eq!(upload["status"], "pending", "{upload}");

    // Refused: tried again about 5 s later, then 5 min later (the webhook schedule).
    assert_eq!(rig.round().await, 1);
    let upload = rig.upload(id).await;
    assert_eq!(upload["status"], "failed", "{upload}");
    assert_eq!(upload["attempts"], 1);
    assert!(
        upload["last_error"].as_str().unwrap().contains("-1"),
        "{upload}"
    );
    assert_eq!(rig.round().await, 0, "not due yet");
    shop.ordo.clock.advance(6_000);
    assert_eq!(rig.round().await, 1);
    let upload = rig.upload(id).await;
    assert_eq!(upload["attempts"], 2);
    assert!(upload["last_error"].as_str().unwrap().contains("10060012"));
    shop.ordo.clock.advance(2 * MINUTE);
    assert_eq!(rig.round().await, 0, "the second retry waits about 5 min");
    shop.ordo.clock.advance(4 * MINUTE);
    assert_eq!(rig.round().await, 1);
    let upload = rig.upload(id).await;
    assert_eq!(upload["status"], "succeeded", "{upload}");
    assert_eq!(upload["attempts"], 3);
    assert!(upload["accepted_at"].is_string());

    // Accepted once, saying what WeChat checks.
    let accepted = rig.mini.accepted();
    assert_eq!(accepted.len(), 1);
    let body = &accepted[0].body;
    assert_eq!(body["order_key"]["order_number_type"], 2);
    assert_eq!(body["order_key"]["transaction_id"], txn.as_str());
    assert_eq!(body["logistics_type"], 1);
    assert_eq!(
        body["shipping_list"][0]["tracking_no"],
        format!("SF{id:013}")
    );
    assert_eq!(body["shipping_list"][0]["express_company"], "SF");
    assert_eq!(
        body["shipping_list"][0]["contact"]["receiver_contact"],
        "138****8000"
    );
    assert_eq!(body["shipping_list"][0]["item_desc"], "明前龙井 ×2");
    assert_eq!(body["payer"]["openid"], OPENID);
    // One token for the three attempts.
    assert_eq!(rig.mini.token_requests(), 1);
    // Nothing more is sent.
    shop.ordo.clock.advance(24 * 60 * MINUTE);
    assert_eq!(rig.round().await, 0);
    assert_eq!(rig.mini.accepted().len(), 1);

    // A token is kept until it expires: two hours on, the next upload asks for a new one;
    // and the worker takes an order the moment it ships.
    let shutdown = ordo::scheduler::Shutdown::new();
    let worker = tokio::spawn(ordo::payments::shipping::run(
        shop.ordo.clone(),
        shutdown.clone(),
    ));
    let (next, _) = rig.paid_order().await;
    rig.ship(next, "ZTO").await;
    let started = Instant::now();
    while rig.mini.accepted().len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the worker did not upload"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(rig.mini.token_requests(), 2, "the token had expired");
    shutdown.trigger();
    worker.await.unwrap();
    shop.assert_check_clean().await;
}

async fn a_refused_token_is_renewed(backend: Backend) {
    let rig = Rig::new(backend).await;
    let (first, _) = rig.paid_order().await;
    rig.ship(first, "YTO").await;
    assert_eq!(rig.round().await, 1);
    assert_eq!(rig.upload(first).await["status"], "succeeded");
    // WeChat forgets the token (another server forced a new one): refused with 40001, and
    // the next attempt asks for a fresh token with force_refresh.
    rig.mini.forget_tokens();
    let (second, _) = rig.paid_order().await;
    rig.ship(second, "YTO").await;
    assert_eq!(rig.round().await, 1);
    let upload = rig.upload(second).await;
    assert_eq!(upload["status"], "failed");
    assert!(upload["last_error"].as_str().unwrap().contains("40001"));
    rig.shop().ordo.clock.advance(6_000);
    assert_eq!(rig.round().await, 1);
    assert_eq!(rig.upload(second).await["status"], "succeeded");
    let asked: Vec<Value> = rig
        .mini
        .seen()
        .into_iter()
        .filter(|s| s.path == "/cgi-bin/stable_token")
        .map(|s| s.body)
        .collect();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert_eq!(asked[0]["force_refresh"], false);
    assert_eq!(asked[1]["force_refresh"], true);
    assert_eq!(
        asked[1]["secret"], "<secret>",
        "the double hides what it was sent"
    );
    // A server error and an unreadable answer are failures to retry, not facts.
    let (third, _) = rig.paid_order().await;
    rig.mini
        .fail_next(&[Fault::ServerError, Fault::BadSignature]);
    rig.ship(third, "YTO").await;
    assert_eq!(rig.round().await, 1);
    assert!(
        rig.upload(third).await["last_error"]
            .as_str()
            .unwrap()
            .contains("HTTP 500")
    );
    rig.shop().ordo.clock.advance(6_000);
    assert_eq!(rig.round().await, 1);
    assert!(
        rig.upload(third).await["last_error"]
            .as_str()
            .unwrap()
            .contains("unreadable")
    );
    rig.shop().ordo.clock.advance(6 * MINUTE);
    assert_eq!(rig.round().await, 1);
    assert_eq!(rig.upload(third).await["status"], "succeeded");
    assert_eq!(rig.mini.accepted().len(), 3);
}

async fn staff_send_a_given_up_upload_again(backend: Backend) {
    let rig = Rig::new(backend).await;
    let shop = rig.shop();
    let (id, _) = rig.paid_order().await;
    // WeChat does not know the payment yet, for the whole schedule (about 4 days).
    rig.mini.refuse_next(&[(10060001, "支付单不存在"); 10]);
    rig.ship(id, "JD").await;
    let mut rounds = 0;
    loop {
        rounds += rig.round().await;
        let upload = rig.upload(id).await;
        if upload["status"] == "dead" {
            assert!(upload["next_attempt_at"].is_null());
            break;
        }
        assert!(rounds < 12, "{upload}");
        shop.ordo.clock.advance(25 * 60 * MINUTE);
    }
    assert_eq!(rounds, 10, "the first attempt and nine retries");
    assert_eq!(rig.round().await, 0);

    // The order's page in the console says so, and offers to send it again.
    let console = crate::helpers::client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let signed_in = console
        .post(format!("{}/console/login", rig.app.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={}", shop.staff_token))
        .send()
        .await
        .unwrap();
    let cookie = crate::console::session_cookie(signed_in.headers()).expect("a session");
    let page = async |method: Method, path: &str| -> (StatusCode, String) {
        let response = console
            .request(method, format!("{}{path}", rig.app.base))
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .send()
            .await
            .unwrap();
        (response.status(), response.text().await.unwrap())
    };
    let (_, order_page) = page(Method::GET, &format!("/console/orders/{id}")).await;
    assert!(order_page.contains("Gave up retrying"), "{order_page}");
    assert!(order_page.contains("10060001"));
    assert!(order_page.contains("upload-retry"));

    // Only staff may send it again; then it goes at once and is accepted.
    let path = format!("/api/v1/orders/{id}/wechat-shipping/retry");
    let (status, _) = rig
        .app
        .call(Method::POST, &path, rig.app.customer(), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, order_page) = page(
        Method::POST,
        &format!("/console/orders/{id}/wechat-shipping"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{order_page}");
    assert!(order_page.contains("will be sent to WeChat again now"));
    assert_eq!(rig.upload(id).await["status"], "pending");
    let audit = shop
        .ordo
        .audit_log(
            shop.staff(),
            &ordo::audit::AuditFilter {
                action: Some("order.wechat_shipping_retry".into()),
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].object_id.as_deref(), Some(id.to_string().as_str()));
    assert_eq!(rig.round().await, 1);
    assert_eq!(rig.upload(id).await["status"], "succeeded");
    assert_eq!(rig.mini.accepted().len(), 1);
    let (_, order_page) = page(Method::GET, &format!("/console/orders/{id}")).await;
    assert!(order_page.contains("Accepted by WeChat"));
    assert!(!order_page.contains("upload-retry"));
    // Accepted: nothing to send again.
    let (status, problem) = rig
        .app
        .call(Method::POST, &path, rig.app.staff(), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    // An order without an upload.
    let (other, _) = rig.paid_order().await;
    let (status, _) = rig
        .app
        .call(
            Method::POST,
            &format!("/api/v1/orders/{other}/wechat-shipping/retry"),
            rig.app.staff(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn only_orders_paid_through_wechat_are_uploaded(backend: Backend) {
    let rig = Rig::new(backend).await;
    let shop = rig.shop();
    // Paid through the signed JSON webhook (manual): nothing to tell WeChat.
    let product = shop.product(10, 500).await;
    let placed = shop.order(&[(product.id, 1)]).await;
    shop.pay(&placed).await;
    rig.ship(placed.order.order.id, "SF").await;
    assert_eq!(rig.round().await, 0);
    assert!(rig.upload(placed.order.order.id).await.is_null());
    assert_eq!(
        shop.count("SELECT COUNT(*) FROM wechat_shipping_uploads")
            .await,
        0
    );
    // A shop that does not report shipments (no wechat_app_secret): nothing either.
    let quiet = Rig::with(backend, false).await;
    let (id, _) = quiet.paid_order().await;
    quiet.ship(id, "SF").await;
    assert_eq!(quiet.round().await, 0);
    assert_eq!(
        quiet
            .shop()
            .count("SELECT COUNT(*) FROM wechat_shipping_uploads")
            .await,
        0
    );
    assert!(quiet.mini.seen().is_empty());
}

async fn an_upload_never_holds_the_database(backend: Backend) {
    let rig = Rig::new(backend).await;
    let shop = rig.shop();
    let (id, _) = rig.paid_order().await;
    rig.ship(id, "STO").await;
    // WeChat takes its time; meanwhile the shop goes on (on SQLite, a transaction held
    // across the call would keep every writer waiting).
    rig.mini.set_delay(Duration::from_millis(1_200));
    let ordo = shop.ordo.clone();
    let round = tokio::spawn(async move { ordo.upload_shipping_once().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let product = shop.product(5, 100).await;
    let started = Instant::now();
    shop.order(&[(product.id, 1)]).await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(900),
        "an order waited {took:?} for an upload"
    );
    assert!(
        !round.is_finished(),
        "the upload was still waiting for WeChat"
    );
    assert_eq!(round.await.unwrap().unwrap(), 1);
    rig.mini.set_delay(Duration::ZERO);
    assert_eq!(rig.upload(id).await["status"], "succeeded");
}
