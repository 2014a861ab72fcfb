//! A payment provider double to try ordo with by hand: WeChat Pay v3, Alipay or Stripe,
//! speaking the provider's protocol on a local port, with keys made at start and written to
//! a directory ordo reads them from.
//!
//! ```text
//! cargo run --example provider-double -- wechatpay [--port 9090] [--dir double-keys] [--ordo http://127.0.0.1:8080]
//! ```
//!
//! It prints the settings to start `ordo serve` with, and how to pay a transaction:
//! `POST /_double/pay {"out_trade_no": …}` (Stripe: `{"payment_intent": …}`) makes the
//! customer pay and the double notify ordo, signed as the provider signs. With `wechatpay`,
//! a double of WeChat's mini-program API listens on the next port too (`stable_token`,
//! `upload_shipping_info`), so shipping a paid order uploads its shipping information.

#[path = "../tests/doubles/mod.rs"]
mod doubles;

use std::net::SocketAddr;
use std::path::PathBuf;

const USAGE: &str = "usage: cargo run --example provider-double -- wechatpay|alipay|stripe \
                     [--port PORT] [--dir DIR] [--ordo URL]";

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let Some(which) = args.next() else {
        eprintln!("{USAGE}");
        std::process::exit(2);
    };
    let (mut port, mut dir, mut ordo) = (
        9090u16,
        PathBuf::from("double-keys"),
        "http://127.0.0.1:8080".to_owned(),
    );
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| {
            eprintln!("{flag} needs a value\n{USAGE}");
            std::process::exit(2);
        });
        match flag.as_str() {
            "--port" => {
                port = value.parse().unwrap_or_else(|_| {
                    eprintln!("--port takes a port number\n{USAGE}");
                    std::process::exit(2);
                })
            }
            "--dir" => dir = PathBuf::from(value),
            "--ordo" => ordo = value.trim_end_matches('/').to_owned(),
            _ => {
                eprintln!("unknown option {flag}\n{USAGE}");
                std::process::exit(2);
            }
        }
    }
    if let Err(err) = std::fs::create_dir_all(&dir) {
        eprintln!("cannot create {}: {err}", dir.display());
        std::process::exit(1);
    }
    let dir = dir.canonicalize().unwrap_or(dir);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let clock = ordo::Clock::system();
    eprintln!("making keys (a few seconds in a debug build)...");
    let (settings, pay) = match which.as_str() {
        "wechatpay" => {
            let double =
                doubles::wechatpay::WechatPayDouble::start_on(clock.clone(), Some(addr)).await;
            let mini = doubles::wechat_miniprogram::MiniProgramDouble::start_on(
                clock,
                Some(([127, 0, 0, 1], port.saturating_add(1)).into()),
            )
            .await;
            mini.beside(double.clone());
            let mut settings = double.settings(&dir);
            settings.extend(mini.settings());
            settings.push(("default_payment_provider", "wechatpay".to_owned()));
            (
                settings,
                format!(
                    "curl -s -X POST {}/_double/pay -d '{{\"out_trade_no\": \"<provider_ref>\"}}'",
                    double.base_url
                ),
            )
        }
        "alipay" => {
            let double = doubles::alipay::AlipayDouble::start_on(clock, Some(addr)).await;
            let mut settings = double.settings(&dir);
            settings.push(("default_payment_provider", "alipay".to_owned()));
            let base = double
                .gateway_url
                .trim_end_matches("/gateway.do")
                .to_owned();
            (
                settings,
                format!(
                    "curl -s -X POST {base}/_double/pay -d '{{\"out_trade_no\": \"<provider_ref>\"}}'"
                ),
            )
        }
        "stripe" => {
            let double = doubles::stripe::StripeDouble::start_on(clock, Some(addr)).await;
            double.send_webhooks_to(&format!("{ordo}/api/v1/payments/stripe/webhook"));
            let mut settings = double.settings();
            settings.push(("default_payment_provider", "stripe".to_owned()));
            (
                settings,
                format!(
                    "curl -s -X POST {}/_double/pay -d '{{\"payment_intent\": \"<provider_ref>\"}}'",
                    double.base_url
                ),
            )
        }
        other => {
            eprintln!("unknown provider {other:?}\n{USAGE}");
            std::process::exit(2);
        }
    };
    println!("# {which} double listening on 127.0.0.1:{port}; start ordo with:");
    println!("export ORDO_PUBLIC_URL={ordo}");
    for (key, value) in &settings {
        println!("export ORDO_{}={value}", key.to_ascii_uppercase());
    }
    println!("# then pay a payment's provider_ref (from POST /api/v1/orders/{{id}}/payments):");
    println!("# {pay}");
    let _ = tokio::signal::ctrl_c().await;
}
