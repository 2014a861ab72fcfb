//! Payment providers against their doubles, on both databases: opening a payment at each
//! provider (signed requests, amounts in the provider's unit, expiry, notify URL),
//! notifications (applied once; forged or mismatched ones refused with nothing changed),
//! the sweep asking before it cancels (found paid, closed first, deferred while the provider
//! cannot answer), the reconciliation job, refunds through the provider, and late payments
//! refunded by themselves.

use crate::doubles::alipay::{self, AlipayDouble};
use crate::doubles::stripe::{self, StripeDouble};
use crate::doubles::wechatpay::{self, WechatPayDouble};
use crate::doubles::{Fault, Sent, post, verify};
use crate::helpers::{Backend, MINUTE, T0, TestShop};
use crate::on_both_databases;
use chrono::Timelike;
use ordo::Settings;
use ordo::domain::{
    NewOrder, NewProduct, OrderStatus, PaymentProvider, PaymentStatus, Product, RefundState,
};
use ordo::orders::{PlacedOrder, TransitionInput};
use ordo::payments::{OpenPayment, OpenedPayment};
use ordo::sweep::{SweepRequest, SweepSummary, SweepTrigger};
use serde_json::{Value, json};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

on_both_databases!(
    opening_a_payment_is_signed_and_checked,
    a_notification_pays_once,
    forged_wechatpay_notifications_change_nothing,
    forged_alipay_notifications_change_nothing,
    forged_stripe_notifications_change_nothing,
    malformed_notifications_change_nothing,
    a_lost_notification_is_found_by_the_sweep_and_by_reconciliation,
    unpaid_transactions_are_closed_before_their_orders_are_cancelled,
    a_provider_that_cannot_answer_defers_the_cancel,
    refunds_go_through_the_provider,
    late_payments_are_refunded_by_themselves,
    wechatpay_and_alipay_take_cny_only,
    a_failed_open_leaves_the_order_standing,
    another_provider_or_a_cancel_closes_the_open_one_first,
    sweeps_killed_again_and_again_never_cancel_a_paid_order,
);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Wechat,
    Alipay,
    Stripe,
}

const ALL: [Which; 3] = [Which::Wechat, Which::Alipay, Which::Stripe];
pub const OPENID: &str = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o";

impl Which {
    pub fn provider(self) -> PaymentProvider {
        match self {
            Which::Wechat => PaymentProvider::Wechatpay,
            Which::Alipay => PaymentProvider::Alipay,
            Which::Stripe => PaymentProvider::Stripe,
        }
    }
}

/// A shop whose ordo speaks to all three doubles, serving HTTP for their notifications.
pub struct Rig {
    pub shop: TestShop,
    pub wechat: WechatPayDouble,
    pub alipay: AlipayDouble,
    pub stripe: StripeDouble,
    pub base: String,
    pub keys: tempfile::TempDir,
}

/// Settings with the doubles' (key, value) pairs applied, as `ordo.toml` would.
pub fn settings_with(pairs: &[(&str, String)]) -> Settings {
    let mut value = serde_json::to_value(Settings::default()).unwrap();
    for (key, v) in pairs {
        value[*key] = match *key {
            "provider_timeout_seconds" | "provider_concurrency" => json!(v.parse::<u64>().unwrap()),
            _ => json!(v),
        };
    }
    serde_json::from_value(value).expect("settings")
}

impl Rig {
    pub async fn new(backend: Backend) -> Rig {
        let mut shop = TestShop::new(backend).await;
        let clock = shop.ordo.clock.clone();
        let wechat = WechatPayDouble::start(clock.clone()).await;
        let alipay = AlipayDouble::start(clock.clone()).await;
        let stripe = StripeDouble::start(clock.clone()).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        stripe.send_webhooks_to(&format!("{base}/api/v1/payments/stripe/webhook"));
        let keys = tempfile::tempdir().unwrap();
        let mut pairs = wechat.settings(keys.path());
        pairs.extend(alipay.settings(keys.path()));
        pairs.extend(stripe.settings());
        pairs.push(("public_url", base.clone()));
        pairs.push(("provider_timeout_seconds", "2".to_owned()));
        let providers =
            ordo::payments::load_providers(&settings_with(&pairs), clock).expect("providers");
        shop.ordo = shop.ordo.clone().with_providers(providers);
        let state = ordo::http::AppState::new(shop.ordo.clone()).with_webhook_secret("secret");
        tokio::spawn(ordo::http::serve(listener, state, std::future::pending()));
        Rig {
            shop,
            wechat,
            alipay,
            stripe,
            base,
            keys,
        }
    }

    pub async fn product(&self, currency: &str, price_cents: i64) -> Product {
        static SKU: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        self.shop
            .ordo
            .create_product(
                self.shop.staff(),
                &NewProduct {
                    sku: format!(
                        "CN-{}",
                        SKU.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                    ),
                    name: "茶叶".into(),
                    price_cents,
                    currency: currency.into(),
                    stock: 100,
                },
            )
            .await
            .unwrap()
    }

    /// An order of 2 units of a CNY product at 12.34 (24.68 in all).
    pub async fn order(&self) -> PlacedOrder {
        let product = self.product("CNY", 1234).await;
        self.shop
            .ordo
            .place_order(
                self.shop.owner(),
                &NewOrder::from_lines(self.shop.customer.id, &[(product.id, 2)], None),
            )
            .await
            .unwrap()
    }

    pub async fn open(&self, which: Which, order_id: i64) -> ordo::Result<OpenedPayment> {
        self.shop
            .ordo
            .open_payment(
                self.shop.owner(),
                order_id,
                &OpenPayment {
                    provider: Some(which.provider()),
                    openid: (which == Which::Wechat).then(|| OPENID.to_owned()),
                },
            )
            .await
    }

    /// An order with a payment open at `which`: (order id, provider_ref).
    pub async fn opened(&self, which: Which) -> (i64, String) {
        let order = self.order().await;
        let id = order.order.order.id;
        let opened = self.open(which, id).await.expect("opened");
        (id, opened.payment.provider_ref.expect("provider_ref"))
    }

    /// The customer pays and the provider notifies ordo: ordo's answer's status.
    pub async fn pay(&self, which: Which, reference: &str) -> u16 {
        match which {
            Which::Wechat => self.wechat.pay(reference).await.expect("payable"),
            Which::Alipay => self.alipay.pay(reference).await.expect("payable").status,
            Which::Stripe => self.stripe.pay(reference).await.expect("payable"),
        }
    }

    /// The customer pays; the notification is lost.
    pub fn pay_quietly(&self, which: Which, reference: &str) {
        let paid = match which {
            Which::Wechat => self.wechat.pay_quietly(reference).is_some(),
            Which::Alipay => self.alipay.pay_quietly(reference).is_some(),
            Which::Stripe => self.stripe.pay_quietly(reference).is_some(),
        };
        assert!(paid, "{which:?} {reference} could not be paid");
    }

    pub async fn force_pay(&self, which: Which, reference: &str) -> u16 {
        match which {
            Which::Wechat => self.wechat.force_pay(reference).await.unwrap(),
            Which::Alipay => self.alipay.force_pay(reference).await.unwrap().status,
            Which::Stripe => self.stripe.force_pay(reference).await.unwrap(),
        }
    }

    pub fn fail_always(&self, which: Which, fault: Option<Fault>) {
        match which {
            Which::Wechat => self.wechat.fail_always(fault),
            Which::Alipay => self.alipay.fail_always(fault),
            Which::Stripe => self.stripe.fail_always(fault),
        }
    }

    pub fn pay_before_close(&self, which: Which, on: bool) {
        match which {
            Which::Wechat => self.wechat.pay_before_close(on),
            Which::Alipay => self.alipay.pay_before_close(on),
            Which::Stripe => self.stripe.pay_before_close(on),
        }
    }

    /// The transaction's state at the provider.
    pub fn state_at_provider(&self, which: Which, reference: &str) -> String {
        match which {
            Which::Wechat => self.wechat.txn(reference).unwrap().state,
            Which::Alipay => self.alipay.trade(reference).unwrap().status,
            Which::Stripe => self.stripe.intent(reference).unwrap().status,
        }
    }

    pub fn closed_state(which: Which) -> &'static str {
        match which {
            Which::Wechat => "CLOSED",
            Which::Alipay => "TRADE_CLOSED",
            Which::Stripe => "canceled",
        }
    }

    /// Every request the double saw was signed (or, for Stripe, carried the secret key).
    pub fn all_signed(&self, which: Which) -> bool {
        match which {
            Which::Wechat => self.wechat.seen().iter().all(|s| s.signed),
            Which::Alipay => self.alipay.seen().iter().all(|s| s.signed),
            Which::Stripe => self.stripe.seen().iter().all(|s| s.authorized),
        }
    }

    /// A real sweep as of 31 minutes after the start (every test order is due then).
    pub async fn sweep(&self) -> SweepSummary {
        self.shop.ordo.clock.set(T0 + 31 * MINUTE);
        let request = SweepRequest {
            timeout_minutes: 30,
            dry_run: false,
            batch_size: 100,
            limit: None,
            now: None,
        };
        self.shop
            .ordo
            .run_sweep(
                self.shop.staff(),
                SweepTrigger::Api,
                &request,
                &AtomicBool::new(false),
                |_, _| {},
            )
            .await
            .expect("sweep")
            .1
    }

    pub async fn payment_of(&self, order_id: i64) -> ordo::domain::Payment {
        let order = self
            .shop
            .ordo
            .order(self.shop.staff(), order_id)
            .await
            .unwrap();
        order.payments.last().cloned().unwrap()
    }

    pub fn notify_url(&self, which: Which) -> String {
        match which {
            Which::Wechat => format!("{}/api/v1/payments/wechatpay/notify", self.base),
            Which::Alipay => format!("{}/api/v1/payments/alipay/notify", self.base),
            Which::Stripe => format!("{}/api/v1/payments/stripe/webhook", self.base),
        }
    }

    /// Waits up to 10 s for `done` (work the service does in the background).
    pub async fn eventually<F, Fut>(&self, what: &str, done: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        for _ in 0..200 {
            if done().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{what} did not happen");
    }
}

fn china_time(ms: i64) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .unwrap()
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
}

async fn opening_a_payment_is_signed_and_checked(backend: Backend) {
    let rig = Rig::new(backend).await;
    // The doubles sign with ring for speed; the rsa crate makes the very same signature.
    assert_eq!(
        rig.wechat.platform.sign(b"message"),
        rig.wechat.platform.sign_slowly(b"message")
    );
    for which in ALL {
        let order = rig.order().await;
        let id = order.order.order.id;
        let opened = rig.open(which, id).await.expect("opened");
        let payment = &opened.payment;
        assert_eq!(payment.provider, which.provider());
        assert!(payment.provider_open, "{which:?}");
        assert_eq!(payment.amount_cents, 2468);
        let reference = payment.provider_ref.clone().unwrap();
        let client = opened.client.clone().expect("client parameters");
        let expires = china_time(payment.expires_at);
        match which {
            Which::Wechat => {
                let txn = rig.wechat.txn(&reference).expect("a transaction");
                assert_eq!(txn.total, 2468, "fen");
                assert_eq!(txn.currency, "CNY");
                assert_eq!(txn.openid, OPENID);
                assert_eq!(txn.appid, wechatpay::APPID);
                assert_eq!(
                    chrono::DateTime::parse_from_rfc3339(&txn.time_expire).unwrap(),
                    expires.with_nanosecond(0).unwrap()
                );
                assert!(txn.time_expire.ends_with("+08:00"), "{}", txn.time_expire);
                assert_eq!(txn.notify_url, rig.notify_url(which));
                // wx.requestPayment's parameters, signed with the merchant key.
                assert_eq!(client["appId"], wechatpay::APPID);
                assert_eq!(client["signType"], "RSA");
                assert_eq!(client["package"], format!("prepay_id={}", txn.prepay_id));
                let message = format!(
                    "{}\n{}\n{}\n{}\n",
                    client["appId"].as_str().unwrap(),
                    client["timeStamp"].as_str().unwrap(),
                    client["nonceStr"].as_str().unwrap(),
                    client["package"].as_str().unwrap()
                );
                assert!(verify(
                    &rig.wechat.merchant.public,
                    message.as_bytes(),
                    client["paySign"].as_str().unwrap()
                ));
                assert!(!verify(
                    &rig.wechat.platform.public,
                    message.as_bytes(),
                    client["paySign"].as_str().unwrap()
                ));
            }
            Which::Alipay => {
                let trade = rig.alipay.trade(&reference).expect("a trade");
                assert_eq!(trade.total_amount, "24.68", "yuan with two decimals");
                assert_eq!(
                    trade.time_expire,
                    expires.format("%Y-%m-%d %H:%M:%S").to_string()
                );
                assert_eq!(trade.notify_url, rig.notify_url(which));
                assert_eq!(client["qr_code"], trade.qr_code);
            }
            Which::Stripe => {
                let intent = rig.stripe.intent(&reference).expect("an intent");
                assert_eq!(intent.amount, 2468, "minor units");
                assert_eq!(intent.currency, "cny", "lowercase");
                assert_eq!(client["client_secret"], intent.client_secret);
                let create = rig
                    .stripe
                    .seen()
                    .into_iter()
                    .find(|s| s.path == "/v1/payment_intents")
                    .unwrap();
                assert!(create.idempotency_key.is_some(), "an Idempotency-Key");
            }
        }
        assert!(rig.all_signed(which), "{which:?}: every request signed");
        // Asked again: the same payment, and no second transaction at the provider.
        let again = rig.open(which, id).await.unwrap();
        assert_eq!(again.payment.id, payment.id);
        assert!(again.client.is_some());
        match which {
            Which::Wechat => assert_eq!(rig.wechat.txn(&reference).unwrap().prepays, 1),
            Which::Alipay => {}
            Which::Stripe => assert_eq!(
                rig.stripe
                    .seen()
                    .iter()
                    .filter(|s| s.path == "/v1/payment_intents")
                    .count(),
                1
            ),
        }
        // What the front end needs is the owner's alone: GET /orders/{id} does not show it.
        let shown =
            serde_json::to_string(&rig.shop.ordo.order(rig.shop.staff(), id).await.unwrap())
                .unwrap();
        for secret in ["client_secret", "prepay_id", "paySign", "qr_code"] {
            assert!(!shown.contains(secret), "{which:?}: {secret} in {shown}");
        }
    }
    // Over HTTP: the body names the provider; the answer carries `client`.
    let order = rig.order().await;
    let response = crate::helpers::client()
        .post(format!(
            "{}/api/v1/orders/{}/payments",
            rig.base, order.order.order.id
        ))
        .bearer_auth(&rig.shop.customer_token)
        .json(&json!({"provider": "wechatpay", "openid": OPENID}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["provider"], "wechatpay");
    assert!(body["client"]["paySign"].is_string(), "{body}");
    // Staff do not open payments (403 before the body is read).
    let response = crate::helpers::client()
        .post(format!(
            "{}/api/v1/orders/{}/payments",
            rig.base, order.order.order.id
        ))
        .bearer_auth(&rig.shop.staff_token)
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    rig.shop.assert_check_clean().await;
}

async fn a_notification_pays_once(backend: Backend) {
    let rig = Rig::new(backend).await;
    for which in ALL {
        let (id, reference) = rig.opened(which).await;
        // The notification, kept to be sent again.
        let (url, headers, body) = match which {
            Which::Wechat => {
                let txn = rig.wechat.pay_quietly(&reference).unwrap();
                let (headers, body) = rig.wechat.notification(&txn, &Default::default());
                (txn.notify_url, headers, body)
            }
            Which::Alipay => {
                let trade = rig.alipay.pay_quietly(&reference).unwrap();
                let body = rig.alipay.notification(&trade, &Default::default());
                let headers = vec![(
                    "Content-Type".to_owned(),
                    "application/x-www-form-urlencoded".to_owned(),
                )];
                (trade.notify_url, headers, body.into_bytes())
            }
            Which::Stripe => {
                let intent = rig.stripe.pay_quietly(&reference).unwrap();
                let (headers, body) = rig.stripe.event(
                    "payment_intent.succeeded",
                    stripe::intent_json(&intent),
                    &Default::default(),
                );
                (rig.notify_url(which), headers, body)
            }
        };
        let first = post(&url, &headers, body.clone()).await;
        assert!((200..300).contains(&first.status), "{which:?}: {first:?}");
        if which == Which::Alipay {
            assert_eq!(first.body, "success");
        }
        assert_eq!(rig.shop.status(id).await, OrderStatus::Paid, "{which:?}");
        let payment = rig.payment_of(id).await;
        assert_eq!(payment.status, PaymentStatus::Succeeded);
        assert!(!payment.provider_open);
        assert!(payment.provider_txn_id.is_some());
        let history = rig.shop.history(id).await;
        assert_eq!(history.last().unwrap().actor, "system:payment");
        let before = rig.shop.snapshot().await;
        let again = post(&url, &headers, body).await;
        assert!((200..300).contains(&again.status), "{which:?}: {again:?}");
        assert_eq!(
            rig.shop.snapshot().await,
            before,
            "{which:?}: the duplicate changed something"
        );
    }
    rig.shop.assert_check_clean().await;
}

/// Sends a notification and checks it was refused with `status` and changed nothing.
async fn refused(
    rig: &Rig,
    label: &str,
    url: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
    status: u16,
) -> Sent {
    let before = rig.shop.snapshot().await;
    let answer = post(url, headers, body).await;
    assert_eq!(answer.status, status, "{label}: {answer:?}");
    assert_eq!(
        rig.shop.snapshot().await,
        before,
        "{label} changed something"
    );
    answer
}

async fn forged_wechatpay_notifications_change_nothing(backend: Backend) {
    let rig = Rig::new(backend).await;
    let (id, reference) = rig.opened(Which::Wechat).await;
    let txn = rig.wechat.pay_quietly(&reference).unwrap();
    let url = rig.notify_url(Which::Wechat);
    let cases: Vec<(&str, wechatpay::Tweak, u16)> = vec![
        (
            "a forged signature",
            wechatpay::Tweak {
                bad_signature: true,
                ..Default::default()
            },
            401,
        ),
        (
            "signed with another key",
            wechatpay::Tweak {
                signed_by_merchant: true,
                ..Default::default()
            },
            401,
        ),
        (
            "a stale timestamp",
            wechatpay::Tweak {
                timestamp_offset_s: -301,
                ..Default::default()
            },
            401,
        ),
        (
            "a timestamp from the future",
            wechatpay::Tweak {
                timestamp_offset_s: 400,
                ..Default::default()
            },
            401,
        ),
        (
            "an unknown serial",
            wechatpay::Tweak {
                serial: Some("PUB_KEY_ID_0000000000000000000000000000".into()),
                ..Default::default()
            },
            401,
        ),
        (
            "a tampered ciphertext",
            wechatpay::Tweak {
                tamper_ciphertext: true,
                ..Default::default()
            },
            400,
        ),
        (
            "a wrong amount",
            wechatpay::Tweak {
                amount: Some(txn.total - 1),
                ..Default::default()
            },
            400,
        ),
        (
            "a wrong currency",
            wechatpay::Tweak {
                currency: Some("USD".into()),
                ..Default::default()
            },
            400,
        ),
        (
            "another merchant",
            wechatpay::Tweak {
                mchid: Some("1900000999".into()),
                ..Default::default()
            },
            400,
        ),
        (
            "another app",
            wechatpay::Tweak {
                appid: Some("wx0000000000000000".into()),
                ..Default::default()
            },
            400,
        ),
    ];
    for (label, tweak, status) in cases {
        let (headers, body) = rig.wechat.notification(&txn, &tweak);
        let answer = refused(&rig, label, &url, &headers, body, status).await;
        let answer: Value = serde_json::from_str(&answer.body).unwrap();
        assert_eq!(answer["code"], "FAIL", "{label}");
        assert!(answer["message"].is_string());
    }
    // WeChat Pay's signature probe is refused like any bad signature.
    let (mut headers, body) = rig.wechat.notification(&txn, &Default::default());
    for (name, value) in headers.iter_mut() {
        if name == "Wechatpay-Signature" {
            *value = "WECHATPAY/SIGNTEST/abcdefg".to_owned();
        }
    }
    refused(&rig, "the signature probe", &url, &headers, body, 401).await;
    assert_eq!(rig.shop.status(id).await, OrderStatus::Pending);
    // The genuine one pays.
    let (headers, body) = rig.wechat.notification(&txn, &Default::default());
    assert_eq!(post(&url, &headers, body).await.status, 204);
    assert_eq!(rig.shop.status(id).await, OrderStatus::Paid);
    rig.shop.assert_check_clean().await;
}

async fn forged_alipay_notifications_change_nothing(backend: Backend) {
    let rig = Rig::new(backend).await;
    let (id, reference) = rig.opened(Which::Alipay).await;
    let trade = rig.alipay.pay_quietly(&reference).unwrap();
    let url = rig.notify_url(Which::Alipay);
    let form = vec![(
        "Content-Type".to_owned(),
        "application/x-www-form-urlencoded".to_owned(),
    )];
    let cases: Vec<(&str, alipay::Tweak, u16)> = vec![
        (
            "a forged signature",
            alipay::Tweak {
                bad_signature: true,
                ..Default::default()
            },
            401,
        ),
        (
            "changed after signing",
            alipay::Tweak {
                tamper_after_signing: true,
                ..Default::default()
            },
            401,
        ),
        (
            "another app",
            alipay::Tweak {
                app_id: Some("2021000999999999".into()),
                ..Default::default()
            },
            400,
        ),
        (
            "a wrong amount",
            alipay::Tweak {
                total_amount: Some("24.67".into()),
                ..Default::default()
            },
            400,
        ),
    ];
    for (label, tweak, status) in cases {
        let body = rig.alipay.notification(&trade, &tweak);
        let answer = refused(&rig, label, &url, &form, body.into_bytes(), status).await;
        assert_eq!(answer.body, "fail", "{label}");
    }
    assert_eq!(rig.shop.status(id).await, OrderStatus::Pending);
    let body = rig.alipay.notification(&trade, &Default::default());
    let answer = post(&url, &form, body.into_bytes()).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "success"));
    assert_eq!(rig.shop.status(id).await, OrderStatus::Paid);
    rig.shop.assert_check_clean().await;
}

async fn forged_stripe_notifications_change_nothing(backend: Backend) {
    let rig = Rig::new(backend).await;
    let (id, reference) = rig.opened(Which::Stripe).await;
    let intent = rig.stripe.pay_quietly(&reference).unwrap();
    let url = rig.notify_url(Which::Stripe);
    let good = stripe::intent_json(&intent);
    let mut cheaper = good.clone();
    cheaper["amount"] = json!(1);
    cheaper["amount_received"] = json!(1);
    let mut dollars = good.clone();
    dollars["currency"] = json!("usd");
    let cases: Vec<(&str, Value, stripe::Tweak, u16)> = vec![
        (
            "a forged signature",
            good.clone(),
            stripe::Tweak {
                bad_signature: true,
                ..Default::default()
            },
            401,
        ),
        (
            "a stale timestamp",
            good.clone(),
            stripe::Tweak {
                timestamp_offset_s: -301,
                ..Default::default()
            },
            401,
        ),
        ("a wrong amount", cheaper, Default::default(), 400),
        ("a wrong currency", dollars, Default::default(), 400),
    ];
    for (label, object, tweak, status) in cases {
        let (headers, body) = rig.stripe.event("payment_intent.succeeded", object, &tweak);
        refused(&rig, label, &url, &headers, body, status).await;
    }
    assert_eq!(rig.shop.status(id).await, OrderStatus::Pending);
    let (headers, body) = rig
        .stripe
        .event("payment_intent.succeeded", good, &Default::default());
    assert_eq!(post(&url, &headers, body).await.status, 200);
    assert_eq!(rig.shop.status(id).await, OrderStatus::Paid);
    rig.shop.assert_check_clean().await;
}

async fn malformed_notifications_change_nothing(backend: Backend) {
    let rig = Rig::new(backend).await;
    let (id, reference) = rig.opened(Which::Wechat).await;
    rig.wechat.pay_quietly(&reference).unwrap();
    let garbage = vec![b'x'; 1 << 20];
    let form = vec![(
        "Content-Type".to_owned(),
        "application/x-www-form-urlencoded".to_owned(),
    )];
    for which in ALL {
        let url = rig.notify_url(which);
        let bodies: Vec<(&str, Vec<u8>)> = vec![
            ("not JSON", b"{not json".to_vec()),
            ("missing fields", br#"{"id":"EV-1","object":"event"}"#.to_vec()),
            ("the wrong shape", br#"{"id":"EV-2","event_type":"TRANSACTION.SUCCESS","type":"payment_intent.succeeded","resource":5,"data":{"object":{"id":7}}}"#.to_vec()),
            ("empty", Vec::new()),
            ("a form without a signature", b"out_trade_no=x&trade_status=TRADE_SUCCESS".to_vec()),
        ];
        for (label, body) in bodies {
            // Signed as the provider signs, so that what is wrong is the body itself.
            let headers = match which {
                Which::Wechat => rig.wechat.sign_body(&body),
                Which::Alipay => form.clone(),
                Which::Stripe => rig.stripe.sign_body(&body),
            };
            let before = rig.shop.snapshot().await;
            let answer = post(&url, &headers, body).await;
            assert!(
                (400..500).contains(&answer.status),
                "{which:?} {label}: {answer:?}"
            );
            assert_eq!(rig.shop.snapshot().await, before, "{which:?} {label}");
        }
        let before = rig.shop.snapshot().await;
        let answer = post(&url, &[], garbage.clone()).await;
        assert_eq!(answer.status, 413, "{which:?} 1 MiB of garbage");
        assert_eq!(rig.shop.snapshot().await, before);
    }
    assert_eq!(rig.shop.status(id).await, OrderStatus::Pending);
    rig.shop.assert_check_clean().await;
}

async fn a_lost_notification_is_found_by_the_sweep_and_by_reconciliation(backend: Backend) {
    let rig = Rig::new(backend).await;
    for which in ALL {
        // Reconciliation: 5 minutes after opening, with no word from the provider.
        rig.shop.ordo.clock.set(T0);
        let (id, reference) = rig.opened(which).await;
        rig.pay_quietly(which, &reference);
        rig.shop.ordo.clock.set(T0 + 4 * MINUTE);
        let early = rig
            .shop
            .ordo
            .reconcile_open_payments(&AtomicBool::new(false))
            .await
            .unwrap();
        assert_eq!(
            early.queried, 0,
            "{which:?}: asked before reconcile_after_minutes"
        );
        rig.shop.ordo.clock.set(T0 + 6 * MINUTE);
        let done = rig
            .shop
            .ordo
            .reconcile_open_payments(&AtomicBool::new(false))
            .await
            .unwrap();
        assert_eq!((done.queried, done.found_paid), (1, 1), "{which:?}");
        assert_eq!(rig.shop.status(id).await, OrderStatus::Paid, "{which:?}");
        let note = rig
            .shop
            .history(id)
            .await
            .last()
            .unwrap()
            .note
            .clone()
            .unwrap();
        assert!(note.contains("reconciliation"), "{note}");
    }
    for which in ALL {
        // The sweep: found paid, not cancelled.
        rig.shop.ordo.clock.set(T0);
        let (id, reference) = rig.opened(which).await;
        rig.pay_quietly(which, &reference);
        let summary = rig.sweep().await;
        assert_eq!(summary.found_paid, 1, "{which:?}: {summary:?}");
        assert_eq!(summary.cancelled, 0, "{which:?}: {summary:?}");
        assert!(summary.queried >= 1);
        assert_eq!(rig.shop.status(id).await, OrderStatus::Paid, "{which:?}");
        let note = rig
            .shop
            .history(id)
            .await
            .last()
            .unwrap()
            .note
            .clone()
            .unwrap();
        assert!(note.contains("found paid by reconciliation"), "{note}");
    }
    rig.shop.assert_check_clean().await;
}

async fn unpaid_transactions_are_closed_before_their_orders_are_cancelled(backend: Backend) {
    let rig = Rig::new(backend).await;
    for which in ALL {
        rig.shop.ordo.clock.set(T0);
        let (id, reference) = rig.opened(which).await;
        if which == Which::Alipay {
            rig.alipay.scan(&reference);
        }
        let summary = rig.sweep().await;
        assert_eq!(
            (
                summary.cancelled,
                summary.closed,
                summary.found_paid,
                summary.deferred
            ),
            (1, 1, 0, 0),
            "{which:?}: {summary:?}"
        );
        assert_eq!(rig.shop.status(id).await, OrderStatus::Cancelled);
        assert_eq!(
            rig.state_at_provider(which, &reference),
            Rig::closed_state(which)
        );
        let payment = rig.payment_of(id).await;
        assert!(!payment.provider_open);
        assert_eq!(payment.status, PaymentStatus::Expired);
    }
    // A QR code never scanned: Alipay has no trade; closing it ends the QR code.
    rig.shop.ordo.clock.set(T0);
    let (id, reference) = rig.opened(Which::Alipay).await;
    let summary = rig.sweep().await;
    assert_eq!(summary.cancelled, 1, "{summary:?}");
    assert_eq!(rig.shop.status(id).await, OrderStatus::Cancelled);
    assert_eq!(rig.alipay.trade(&reference).unwrap().status, "TRADE_CLOSED");
    // Paid just as the close arrives: "already paid" makes the order paid.
    for which in ALL {
        rig.shop.ordo.clock.set(T0);
        let (id, reference) = rig.opened(which).await;
        rig.pay_before_close(which, true);
        let summary = rig.sweep().await;
        rig.pay_before_close(which, false);
        assert_eq!(
            (summary.cancelled, summary.found_paid),
            (0, 1),
            "{which:?}: {summary:?}"
        );
        assert_eq!(rig.shop.status(id).await, OrderStatus::Paid, "{which:?}");
        let _ = reference;
    }
    rig.shop.assert_check_clean().await;
}

async fn a_provider_that_cannot_answer_defers_the_cancel(backend: Backend) {
    let rig = Rig::new(backend).await;
    for which in ALL {
        for fault in [
            Fault::ServerError,
            Fault::Stall(Duration::from_secs(4)),
            Fault::BadSignature,
        ] {
            rig.shop.ordo.clock.set(T0);
            let (id, reference) = rig.opened(which).await;
            rig.fail_always(which, Some(fault));
            let summary = rig.sweep().await;
            rig.fail_always(which, None);
            assert_eq!(
                (summary.deferred, summary.cancelled),
                (1, 0),
                "{which:?} {fault:?}: {summary:?}"
            );
            assert_eq!(summary.deferrals.len(), 1);
            assert!(!summary.deferrals[0].error.is_empty());
            assert_eq!(
                rig.shop.status(id).await,
                OrderStatus::Pending,
                "{which:?} {fault:?}"
            );
            let payment = rig.payment_of(id).await;
            assert!(payment.provider_open);
            assert!(payment.provider_error.is_some(), "{which:?} {fault:?}");
            // Recovered: the next run closes and cancels.
            let summary = rig.sweep().await;
            assert_eq!(
                (summary.deferred, summary.cancelled),
                (0, 1),
                "{which:?} {fault:?} after recovery: {summary:?}"
            );
            assert_eq!(rig.shop.status(id).await, OrderStatus::Cancelled);
            if which != Which::Alipay {
                assert_eq!(
                    rig.state_at_provider(which, &reference),
                    Rig::closed_state(which)
                );
            }
        }
    }
    rig.shop.assert_check_clean().await;
}

async fn approve(rig: &Rig, id: i64) -> ordo::Result<ordo::domain::Order> {
    rig.shop
        .ordo
        .transition(
            rig.shop.staff(),
            id,
            OrderStatus::Refunded,
            &TransitionInput {
                note: Some("approved".into()),
                ..TransitionInput::default()
            },
        )
        .await
}

async fn paid_and_refunding(rig: &Rig, which: Which) -> (i64, String) {
    rig.shop.ordo.clock.set(T0);
    let (id, reference) = rig.opened(which).await;
    assert!((200..300).contains(&rig.pay(which, &reference).await));
    rig.shop
        .ordo
        .transition(
            rig.shop.owner(),
            id,
            OrderStatus::Refunding,
            &TransitionInput::default(),
        )
        .await
        .unwrap();
    (id, reference)
}

async fn refunds_go_through_the_provider(backend: Backend) {
    let rig = Rig::new(backend).await;
    // WeChat Pay: processing, then confirmed by notification; a refusal, then a retry.
    let (id, _) = paid_and_refunding(&rig, Which::Wechat).await;
    let order = approve(&rig, id).await.unwrap();
    assert_eq!(order.status, OrderStatus::Refunding, "waits for WeChat Pay");
    let payment = rig.payment_of(id).await;
    assert_eq!(payment.refund(), Some(RefundState::Processing));
    let number = rig.wechat.refunds()[0].out_refund_no.clone();
    assert_eq!(
        rig.wechat.finish_refund(&number, "SUCCESS", true).await,
        Some(204)
    );
    assert_eq!(rig.shop.status(id).await, OrderStatus::Refunded);
    let payment = rig.payment_of(id).await;
    assert_eq!(payment.status, PaymentStatus::Refunded);
    assert_eq!(payment.refund(), Some(RefundState::Succeeded));
    assert!(payment.refund_ref.is_some());

    let (id, _) = paid_and_refunding(&rig, Which::Wechat).await;
    rig.wechat
        .set_refund_mode(wechatpay::RefundMode::Refuse("NOT_ENOUGH".into()));
    let refused = approve(&rig, id).await.unwrap_err();
    assert!(
        matches!(&refused, ordo::Error::Provider(why) if why.contains("NOT_ENOUGH")),
        "{refused:?}"
    );
    assert_eq!(rig.shop.status(id).await, OrderStatus::Refunding);
    let payment = rig.payment_of(id).await;
    assert_eq!(payment.refund(), Some(RefundState::Refused));
    assert!(
        payment
            .refund_error
            .as_deref()
            .unwrap()
            .contains("NOT_ENOUGH")
    );
    // Confirmed by the refund job's query when no notification comes.
    rig.wechat
        .set_refund_mode(wechatpay::RefundMode::Processing);
    assert_eq!(
        approve(&rig, id).await.unwrap().status,
        OrderStatus::Refunding
    );
    let number = rig
        .wechat
        .refunds()
        .into_iter()
        .find(|r| r.status == "PROCESSING")
        .unwrap()
        .out_refund_no;
    rig.wechat.finish_refund(&number, "SUCCESS", false).await;
    rig.shop.ordo.clock.advance(2 * MINUTE);
    let done = rig
        .shop
        .ordo
        .process_refunds(&AtomicBool::new(false))
        .await
        .unwrap();
    assert_eq!(done.succeeded, 1, "{done:?}");
    assert_eq!(rig.shop.status(id).await, OrderStatus::Refunded);

    // Alipay: refunded at once (fund_change Y); a refusal, then a retry.
    let (id, reference) = paid_and_refunding(&rig, Which::Alipay).await;
    rig.alipay.set_refund_mode(alipay::RefundMode::Refuse(
        "ACQ.SELLER_BALANCE_NOT_ENOUGH".into(),
    ));
    assert!(approve(&rig, id).await.is_err());
    assert_eq!(rig.shop.status(id).await, OrderStatus::Refunding);
    rig.alipay.set_refund_mode(alipay::RefundMode::Succeed);
    assert_eq!(
        approve(&rig, id).await.unwrap().status,
        OrderStatus::Refunded
    );
    assert_eq!(rig.alipay.trade(&reference).unwrap().refunded.len(), 1);

    // Stripe: pending, then charge.refunded.
    let (id, reference) = paid_and_refunding(&rig, Which::Stripe).await;
    assert_eq!(
        approve(&rig, id).await.unwrap().status,
        OrderStatus::Refunding
    );
    let refund = rig
        .stripe
        .refunds()
        .into_iter()
        .find(|r| r.payment_intent == reference)
        .unwrap();
    assert_eq!(
        rig.stripe.finish_refund(&refund.id, "succeeded").await,
        Some(200)
    );
    assert_eq!(rig.shop.status(id).await, OrderStatus::Refunded);
    rig.shop.assert_check_clean().await;
}

async fn late_payments_are_refunded_by_themselves(backend: Backend) {
    let rig = Rig::new(backend).await;
    rig.wechat.set_refund_mode(wechatpay::RefundMode::Succeed);
    rig.stripe.set_refund_mode(stripe::RefundMode::Succeed);
    for which in ALL {
        // The sweep closed it; the provider took money all the same.
        rig.shop.ordo.clock.set(T0);
        let (id, reference) = rig.opened(which).await;
        if which == Which::Alipay {
            rig.alipay.scan(&reference);
        }
        assert_eq!(rig.sweep().await.cancelled, 1);
        let status = rig.force_pay(which, &reference).await;
        assert!((200..300).contains(&status), "{which:?}: {status}");
        assert_eq!(rig.shop.status(id).await, OrderStatus::Cancelled);
        let (ordo, staff) = (rig.shop.ordo.clone(), rig.shop.staff());
        rig.eventually(&format!("{which:?}: the late payment's refund"), || {
            let ordo = ordo.clone();
            async move {
                let payments = ordo.order(staff, id).await.unwrap().payments;
                payments.iter().any(|p| {
                    p.provider != PaymentProvider::Manual && p.status == PaymentStatus::Refunded
                })
            }
        })
        .await;
        let payment = rig.payment_of(id).await;
        assert!(!payment.refund_required);
        assert_eq!(payment.refund(), Some(RefundState::Succeeded));
    }
    // Staff cancel a paid order: its money goes back through the provider.
    rig.shop.ordo.clock.set(T0);
    let (id, reference) = rig.opened(Which::Stripe).await;
    assert_eq!(rig.pay(Which::Stripe, &reference).await, 200);
    rig.shop
        .ordo
        .cancel_order(rig.shop.staff(), id, Some("out of stock".into()))
        .await
        .unwrap();
    let (ordo, staff) = (rig.shop.ordo.clone(), rig.shop.staff());
    rig.eventually("the cancelled order's refund", || {
        let ordo = ordo.clone();
        async move {
            let payments = ordo.order(staff, id).await.unwrap().payments;
            payments.iter().any(|p| {
                p.provider != PaymentProvider::Manual && p.status == PaymentStatus::Refunded
            })
        }
    })
    .await;
    rig.shop.assert_check_clean().await;
}

async fn wechatpay_and_alipay_take_cny_only(backend: Backend) {
    let rig = Rig::new(backend).await;
    let product = rig.product("EUR", 500).await;
    let placed = rig
        .shop
        .ordo
        .place_order(
            rig.shop.owner(),
            &NewOrder::from_lines(rig.shop.customer.id, &[(product.id, 1)], None),
        )
        .await
        .unwrap();
    let id = placed.order.order.id;
    for which in [Which::Wechat, Which::Alipay] {
        let before = rig.shop.snapshot().await;
        match rig.open(which, id).await {
            Err(ordo::Error::Validation { field, message }) => {
                assert_eq!(field, "provider");
                assert!(message.contains("CNY"), "{message}");
            }
            other => panic!("{which:?}: {other:?}"),
        }
        assert_eq!(rig.shop.snapshot().await, before);
    }
    // Over HTTP: 422 naming the field.
    let response = crate::helpers::client()
        .post(format!("{}/api/v1/orders/{id}/payments", rig.base))
        .bearer_auth(&rig.shop.customer_token)
        .json(&json!({"provider": "alipay"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["field"], "provider");
    // Stripe takes euros.
    let opened = rig.open(Which::Stripe, id).await.unwrap();
    assert_eq!(
        rig.stripe
            .intent(opened.payment.provider_ref.as_deref().unwrap())
            .unwrap()
            .currency,
        "eur"
    );
}

async fn a_failed_open_leaves_the_order_standing(backend: Backend) {
    let rig = Rig::new(backend).await;
    for which in ALL {
        let order = rig.order().await;
        let id = order.order.order.id;
        rig.fail_always(which, Some(Fault::ServerError));
        let failed = rig.open(which, id).await.unwrap_err();
        rig.fail_always(which, None);
        assert!(
            matches!(failed, ordo::Error::Provider(_)),
            "{which:?}: {failed:?}"
        );
        assert_eq!(rig.shop.status(id).await, OrderStatus::Pending);
        let payment = rig.payment_of(id).await;
        assert!(!payment.provider_open, "never opened: nothing to ask about");
        assert!(payment.provider_error.is_some());
        // Tried again: the same payment, now open at the provider.
        let opened = rig.open(which, id).await.unwrap();
        assert_eq!(opened.payment.id, payment.id, "{which:?}");
        assert!(opened.payment.provider_open);
    }
    // Over HTTP the failure is 502 and says why.
    let order = rig.order().await;
    rig.fail_always(Which::Stripe, Some(Fault::ServerError));
    let response = crate::helpers::client()
        .post(format!(
            "{}/api/v1/orders/{}/payments",
            rig.base, order.order.order.id
        ))
        .bearer_auth(&rig.shop.customer_token)
        .json(&json!({"provider": "stripe"}))
        .send()
        .await
        .unwrap();
    rig.fail_always(Which::Stripe, None);
    assert_eq!(response.status(), 502);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "provider_error");
    assert!(
        problem["detail"].as_str().unwrap().contains("stripe"),
        "{problem}"
    );
    rig.shop.assert_check_clean().await;
}

async fn another_provider_or_a_cancel_closes_the_open_one_first(backend: Backend) {
    let rig = Rig::new(backend).await;
    let (id, wechat_ref) = rig.opened(Which::Wechat).await;
    let alipay = rig.open(Which::Alipay, id).await.unwrap();
    assert_eq!(rig.wechat.txn(&wechat_ref).unwrap().state, "CLOSED");
    // The placement's manual payment, the WeChat Pay one, the Alipay one.
    let payments = rig
        .shop
        .ordo
        .order(rig.shop.staff(), id)
        .await
        .unwrap()
        .payments;
    assert_eq!(payments.len(), 3);
    assert_eq!(payments[1].provider, PaymentProvider::Wechatpay);
    assert!(!payments[1].provider_open);
    assert_eq!(payments[1].status, PaymentStatus::Cancelled);
    assert_eq!(payments[2].id, alipay.payment.id);
    // The owner cancels: closed at the provider first.
    let alipay_ref = alipay.payment.provider_ref.unwrap();
    rig.alipay.scan(&alipay_ref);
    rig.shop
        .ordo
        .cancel_order(rig.shop.owner(), id, None)
        .await
        .unwrap();
    assert_eq!(
        rig.alipay.trade(&alipay_ref).unwrap().status,
        "TRADE_CLOSED"
    );
    // The provider down: the cancel is refused and nothing changes.
    let (id, stripe_ref) = rig.opened(Which::Stripe).await;
    rig.fail_always(Which::Stripe, Some(Fault::ServerError));
    let before = rig.shop.snapshot().await;
    let refused = rig
        .shop
        .ordo
        .cancel_order(rig.shop.owner(), id, None)
        .await
        .unwrap_err();
    rig.fail_always(Which::Stripe, None);
    assert!(matches!(refused, ordo::Error::Provider(_)), "{refused:?}");
    let after = rig.shop.snapshot().await;
    // Only the note of the failure on the payment changed.
    assert_eq!(rig.shop.status(id).await, OrderStatus::Pending);
    assert_ne!(before, after);
    assert_eq!(
        rig.stripe.intent(&stripe_ref).unwrap().status,
        "requires_payment_method"
    );
    // Paid meanwhile: the cancel finds it paid.
    rig.stripe.pay_quietly(&stripe_ref);
    let found = rig
        .shop
        .ordo
        .cancel_order(rig.shop.owner(), id, None)
        .await
        .unwrap_err();
    assert!(matches!(found, ordo::Error::Conflict(_)), "{found:?}");
    assert_eq!(rig.shop.status(id).await, OrderStatus::Paid);
    rig.shop.assert_check_clean().await;
}

/// `ordo cancel-unpaid-orders` (the binary, as cron runs it) asks WeChat Pay about 400
/// overdue orders, closing the unpaid ones, and is SIGKILLed again and again, while the
/// double pays orders at random moments (their notifications lost). Then a run to the end.
/// Whatever the interleaving: an order WeChat Pay says is paid is paid in ordo, or cancelled
/// with its money flagged and a refund under way; an order whose transaction was closed is
/// cancelled; no order is both paid and cancelled; `ordo check` is clean.
async fn sweeps_killed_again_and_again_never_cancel_a_paid_order(backend: Backend) {
    use rand::Rng;
    use std::process::{Command, Stdio};
    const ORDERS: usize = 400;
    let rig = Rig::new(backend).await;
    let clock = rig.shop.ordo.clock.clone();
    let real_now = || chrono::Utc::now().timestamp_millis();
    clock.set(real_now() - 40 * MINUTE);
    let product = rig
        .shop
        .ordo
        .create_product(
            rig.shop.staff(),
            &NewProduct {
                sku: "CRASH-1".into(),
                name: "茶叶".into(),
                price_cents: 500,
                currency: "CNY".into(),
                stock: 1000,
            },
        )
        .await
        .unwrap();
    let mut references = Vec::new();
    for _ in 0..ORDERS {
        let placed = rig
            .shop
            .ordo
            .place_order(
                rig.shop.owner(),
                &NewOrder::from_lines(rig.shop.customer.id, &[(product.id, 1)], None),
            )
            .await
            .unwrap();
        let opened = rig
            .open(Which::Wechat, placed.order.order.id)
            .await
            .unwrap();
        references.push(opened.payment.provider_ref.unwrap());
    }
    // From now on the double (and this process's ordo) keeps the real time.
    let ticking = clock.clone();
    let ticker = tokio::spawn(async move {
        loop {
            ticking.set(chrono::Utc::now().timestamp_millis());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    ticking_wait().await;
    rig.wechat.set_delay(Duration::from_millis(20));
    let paying = std::sync::Arc::new(AtomicBool::new(true));
    let payer = {
        let (wechat, paying) = (rig.wechat.clone(), paying.clone());
        let references = references.clone();
        tokio::spawn(async move {
            let mut paid = 0;
            while paying.load(std::sync::atomic::Ordering::SeqCst) {
                let pick = references[rand::rng().random_range(0..references.len())].clone();
                if wechat.pay_quietly(&pick).is_some() {
                    paid += 1;
                }
                let pause = Duration::from_millis(rand::rng().random_range(5..40));
                tokio::time::sleep(pause).await;
            }
            paid
        })
    };
    let mut env: Vec<(String, String)> = rig
        .wechat
        .settings(rig.keys.path())
        .into_iter()
        .map(|(k, v)| (format!("ORDO_{}", k.to_ascii_uppercase()), v))
        .collect();
    env.extend([
        (
            "ORDO_DATABASE_URL".to_owned(),
            rig.shop.database.url.clone(),
        ),
        // Nobody listens there: notifications are lost, the sweep must ask.
        (
            "ORDO_PUBLIC_URL".to_owned(),
            "http://127.0.0.1:9".to_owned(),
        ),
        ("ORDO_PROVIDER_CONCURRENCY".to_owned(), "4".to_owned()),
        ("ORDO_SWEEP_BATCH_SIZE".to_owned(), "20".to_owned()),
        ("ORDO_LOG".to_owned(), "error".to_owned()),
    ]);
    let sweep = || {
        Command::new(env!("CARGO_BIN_EXE_ordo"))
            .args(["cancel-unpaid-orders", "--json"])
            .envs(env.iter().cloned())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ordo cancel-unpaid-orders")
    };
    let mut killed = 0;
    for _ in 0..8 {
        let mut child = sweep();
        let pause = Duration::from_millis(rand::rng().random_range(100..800));
        tokio::time::sleep(pause).await;
        match child.try_wait().expect("wait") {
            // It finished first: every order it found was dealt with; run again.
            Some(status) => {
                let out = child.wait_with_output().expect("output");
                assert!(
                    status.success(),
                    "{status:?}: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            None => {
                child.kill().expect("SIGKILL");
                let status = child.wait().expect("wait");
                use std::os::unix::process::ExitStatusExt;
                assert_eq!(status.signal(), Some(libc::SIGKILL), "killed by this test");
                killed += 1;
            }
        }
    }
    assert!(killed >= 6, "only {killed} sweep(s) killed mid-run");
    // The last run: the customers still pay while it asks.
    let out = sweep().wait_with_output().unwrap();
    paying.store(false, std::sync::atomic::Ordering::SeqCst);
    let paid_at_double = payer.await.unwrap();
    ticker.abort();
    assert!(
        out.status.success(),
        "the last run: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["deferred"], 0, "{summary}");
    let (mut paid, mut cancelled) = (0, 0);
    for txn in rig.wechat.txns() {
        let payment: i64 = sqlx::query_scalar(
            "SELECT id FROM payments WHERE provider = 'wechatpay' AND provider_ref = $1",
        )
        .bind(&txn.out_trade_no)
        .fetch_one(rig.shop.ordo.db.pool())
        .await
        .unwrap();
        let order_id: i64 = sqlx::query_scalar("SELECT order_id FROM payments WHERE id = $1")
            .bind(payment)
            .fetch_one(rig.shop.ordo.db.pool())
            .await
            .unwrap();
        let order = rig
            .shop
            .ordo
            .order(rig.shop.staff(), order_id)
            .await
            .unwrap();
        let p = order.payments.iter().find(|p| p.id == payment).unwrap();
        match txn.state.as_str() {
            "SUCCESS" => {
                assert_eq!(p.status, PaymentStatus::Succeeded, "{}", txn.out_trade_no);
                match order.order.status {
                    OrderStatus::Paid => paid += 1,
                    OrderStatus::Cancelled => {
                        assert!(
                            p.refund_required,
                            "{}: paid at WeChat Pay, cancelled",
                            txn.out_trade_no
                        );
                        assert!(
                            p.refund().is_some(),
                            "{}: no refund under way",
                            txn.out_trade_no
                        );
                    }
                    other => panic!("{}: {other}", txn.out_trade_no),
                }
            }
            "CLOSED" => {
                assert_eq!(
                    order.order.status,
                    OrderStatus::Cancelled,
                    "{}",
                    txn.out_trade_no
                );
                cancelled += 1;
            }
            other => panic!(
                "{}: still {other} at WeChat Pay after the last run",
                txn.out_trade_no
            ),
        }
    }
    assert_eq!(
        paid + cancelled,
        ORDERS,
        "paid {paid}, cancelled {cancelled}"
    );
    assert!(
        paid >= 1 && paid <= paid_at_double,
        "paid {paid} of {paid_at_double}"
    );
    rig.shop.assert_check_clean().await;
    eprintln!(
        "providers crash test ({backend:?}): {killed} sweep(s) killed, {paid} found paid, {cancelled} cancelled"
    );
}

/// One tick of the real-time clock has happened.
async fn ticking_wait() {
    tokio::time::sleep(Duration::from_millis(50)).await;
}

on_both_databases!(a_sweep_as_of_an_hour_ahead_writes_the_wall_clock);

/// `cancel-unpaid-orders --now T` with T an hour ahead: T decides which orders are due;
/// everything the run writes (cancelled_at, history, ledger, the run and its audit row, the
/// events and their deliveries) carries the wall clock, so a running server delivers the
/// `order.expired` events at once, not when the wall clock reaches T.
async fn a_sweep_as_of_an_hour_ahead_writes_the_wall_clock(backend: Backend) {
    use std::process::{Command, Stdio};
    let mut shop = TestShop::new(backend).await;
    // This shop's own clock is the wall clock, as in production.
    let real = ordo::Ordo::new(
        shop.ordo.db.clone(),
        shop.ordo.policy,
        ordo::Clock::system(),
    );
    shop.ordo = real;
    let receiver = crate::receiver::Receiver::start().await;
    let (_, secret) = shop
        .ordo
        .create_endpoint(
            shop.staff(),
            &ordo::events::endpoints::NewEndpoint {
                url: receiver.url.clone(),
                event_types: Some(vec!["order.expired".into()]),
                description: None,
                ordered: false,
            },
        )
        .await
        .unwrap();
    receiver.trust(&secret);
    let p = shop.product(5, 100).await;
    let placed = shop.order(&[(p.id, 1)]).await;
    let id = placed.order.order.id;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args([
            "serve",
            "--no-scheduler",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env("ORDO_DATABASE_URL", &shop.database.url)
        .env("ORDO_WEBHOOK_ALLOW_PRIVATE", "true")
        .env("ORDO_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = chrono::Utc::now().timestamp_millis();
    let an_hour_ahead = ordo::domain::format_rfc3339(started + 60 * MINUTE);
    let out = Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args(["cancel-unpaid-orders", "--json", "--now", &an_hour_ahead])
        .env("ORDO_DATABASE_URL", &shop.database.url)
        .env("ORDO_LOG", "error")
        .output()
        .unwrap();
    let finished = chrono::Utc::now().timestamp_millis();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["cancelled"], 1, "{summary}");
    // Due as of T: its cutoff is T minus the timeout, after the order was placed.
    let cutoff = ordo::domain::parse_rfc3339(summary["cutoff"].as_str().unwrap()).unwrap();
    assert!(cutoff > started, "{summary}");
    // The events reach the running server's receiver within seconds.
    for _ in 0..200 {
        if receiver.accepted().iter().any(|r| r.order_id() == Some(id)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let server_pid = server.id();
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(server_pid as libc::pid_t, libc::SIGTERM);
    }
    let _ = server.wait();
    let expired: Vec<_> = receiver
        .accepted()
        .into_iter()
        .filter(|r| r.kind() == "order.expired" && r.order_id() == Some(id))
        .collect();
    assert_eq!(expired.len(), 1, "order.expired delivered at once");
    // Every row the run wrote carries the wall clock, not T.
    let wall = |label: &str, at: i64| {
        assert!(
            (started - 1_000..=finished + 1_000).contains(&at),
            "{label} at {} is not the wall clock ({}..{})",
            ordo::domain::format_rfc3339(at),
            ordo::domain::format_rfc3339(started),
            ordo::domain::format_rfc3339(finished)
        );
    };
    let order = shop.ordo.order(shop.staff(), id).await.unwrap().order;
    wall("cancelled_at", order.cancelled_at.unwrap());
    wall("updated_at", order.updated_at);
    wall(
        "the history row",
        shop.history(id).await.last().unwrap().created_at,
    );
    for (label, sql) in [
        (
            "the ledger row",
            "SELECT MAX(created_at) FROM stock_movements WHERE order_id = $1 AND reason = 'release'",
        ),
        (
            "the event",
            "SELECT MAX(created_at) FROM events WHERE order_id = $1 AND type = 'order.expired'",
        ),
        (
            "the payment",
            "SELECT MAX(updated_at) FROM payments WHERE order_id = $1",
        ),
    ] {
        wall(label, shop.scalar(sql, id).await);
    }
    wall(
        "the run",
        shop.count("SELECT MAX(started_at) FROM sweep_runs").await,
    );
    wall(
        "the run's audit row",
        shop.count("SELECT MAX(created_at) FROM audit_log WHERE action = 'sweep.run'")
            .await,
    );
    let expired_at =
        ordo::domain::parse_rfc3339(expired[0].body["timestamp"].as_str().unwrap()).unwrap();
    wall("the event's timestamp", expired_at);
    shop.assert_check_clean().await;
}

/// `ordo providers check` says what is loaded and what is missing, never a secret; a key
/// file missing or malformed stops `ordo serve` with exit status 2 naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_check_and_serve_name_what_is_wrong() {
    use std::process::Command;
    let wechat = WechatPayDouble::start(ordo::Clock::system()).await;
    let keys = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("ordo.db").display());
    let ordo = |args: &[&str], env: &[(String, String)]| {
        Command::new(env!("CARGO_BIN_EXE_ordo"))
            .args(args)
            .env("ORDO_DATABASE_URL", &database)
            .env("ORDO_LOG", "error")
            .envs(env.iter().cloned())
            .env_remove("ORDO_CONFIG")
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let mut env: Vec<(String, String)> = wechat
        .settings(keys.path())
        .into_iter()
        .map(|(k, v)| (format!("ORDO_{}", k.to_ascii_uppercase()), v))
        .collect();
    env.push(("ORDO_PUBLIC_URL".into(), "https://shop.example".into()));
    // Nothing configured: every provider says so; manual has no webhook secret.
    let out = ordo(&["providers", "check"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("wechatpay: not configured"),
        "{}",
        text(&out)
    );
    // Everything there: ready, and the APIv3 key is not shown.
    let out = ordo(&["providers", "check"], &env);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("wechatpay: ready"), "{}", text(&out));
    assert!(!text(&out).contains(wechatpay::API_V3_KEY));
    let out = ordo(&["providers", "check", "--json"], &env);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["providers"][1]["provider"], "wechatpay");
    assert_eq!(report["providers"][1]["ready"], true);
    assert!(!String::from_utf8_lossy(&out.stdout).contains(wechatpay::API_V3_KEY));
    // Configured in part: exit 2, the missing settings named.
    let partial = vec![("ORDO_WECHATPAY_MCHID".to_owned(), "1900000109".to_owned())];
    let out = ordo(&["providers", "check"], &partial);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("missing: wechatpay_appid"),
        "{}",
        text(&out)
    );
    // A key file missing, or not a key: serve stops at once with 2, naming the setting and file.
    let missing = keys.path().join("nowhere.pem").display().to_string();
    let malformed = keys.path().join("malformed.pem");
    std::fs::write(
        &malformed,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    for (path, problem) in [
        (missing.clone(), "cannot read the key file"),
        (
            malformed.display().to_string(),
            "not a usable RSA private key",
        ),
    ] {
        let mut broken = env.clone();
        broken.retain(|(k, _)| k != "ORDO_WECHATPAY_PRIVATE_KEY_PATH");
        broken.push(("ORDO_WECHATPAY_PRIVATE_KEY_PATH".into(), path.clone()));
        for args in [
            &["serve", "--listen", "127.0.0.1:0"][..],
            &["providers", "check"][..],
        ] {
            let out = ordo(args, &broken);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
            assert!(
                text(&out).contains("wechatpay_private_key_path"),
                "{}",
                text(&out)
            );
            assert!(text(&out).contains(&path), "{}", text(&out));
            assert!(text(&out).contains(problem), "{}", text(&out));
        }
    }
    // A default provider that is not configured: 2.
    let out = ordo(
        &["serve", "--listen", "127.0.0.1:0"],
        &[("ORDO_DEFAULT_PAYMENT_PROVIDER".into(), "alipay".into())],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("default_payment_provider is alipay"),
        "{}",
        text(&out)
    );
}
