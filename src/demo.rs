//! `ordo demo`: a small shop to try ordo with: products, a staff and a customer token,
//! and orders in several statuses. `--locale zh-CN` makes a shop in China: prices in
//! yuan, Chinese product names, customers from the shop's own backend with phones, and
//! orders addressed to Chinese cities.

use crate::Ordo;
use crate::customers::CustomerChange;
use crate::domain::{
    Actor, NewOrder, NewProduct, NewShippingAddress, OrderStatus, ProviderEvent, ProviderStatus,
    UserRole,
};
use crate::error::Result;
use crate::orders::{PlacedOrder, TransitionInput};

/// The shop the demo makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DemoLocale {
    /// A shop selling in euros.
    #[value(name = "en")]
    En,
    /// A shop in China: yuan, Chinese names and addresses.
    #[value(name = "zh-CN")]
    ZhCn,
}

/// Plays the provider: the payment succeeds.
async fn pay(ordo: &Ordo, payment: &crate::domain::Payment) -> Result<()> {
    ordo.apply_provider_event(&ProviderEvent {
        event_id: format!("demo-{}", payment.id),
        payment_id: payment.id,
        status: ProviderStatus::Succeeded,
        amount_cents: payment.amount_cents,
    })
    .await?;
    Ok(())
}

/// What differs between the two shops.
struct Shop {
    currency: &'static str,
    catalogue: [(&'static str, &'static str, i64, i64); 3],
    carrier: &'static str,
    tracking: &'static str,
    /// (external id, name, phone, (province, city, district, line, postal code)).
    customers: Vec<(&'static str, &'static str, &'static str, [&'static str; 5])>,
}

fn shop(locale: DemoLocale) -> Shop {
    match locale {
        DemoLocale::En => Shop {
            currency: "EUR",
            catalogue: [
                ("MUG", "Enamel mug", 1_200, 40),
                ("TEE", "Organic T-shirt", 2_500, 25),
                ("CAP", "Canvas cap", 1_800, 3),
            ],
            carrier: "DHL",
            tracking: "JD0000000001",
            customers: Vec::new(),
        },
        DemoLocale::ZhCn => Shop {
            currency: "CNY",
            catalogue: [
                ("TEA", "明前龙井 250克", 16_800, 40),
                ("CUP", "景德镇青花茶杯", 8_800, 25),
                ("POT", "宜兴紫砂壶", 36_800, 3),
            ],
            carrier: "顺丰速运",
            tracking: "SF1234567890123",
            customers: vec![
                (
                    "u-10001",
                    "王小明",
                    "138 0013 8000",
                    [
                        "上海市",
                        "上海市",
                        "浦东新区",
                        "世纪大道 100 号 12 楼",
                        "200120",
                    ],
                ),
                (
                    "u-10002",
                    "李娜",
                    "139 1000 2000",
                    [
                        "浙江省",
                        "杭州市",
                        "西湖区",
                        "文三路 398 号 2 幢 501 室",
                        "310013",
                    ],
                ),
            ],
        },
    }
}

pub async fn run(ordo: &Ordo, locale: DemoLocale) -> Result<()> {
    let shop = shop(locale);
    let (staff, staff_token) = ordo
        .create_user_with_token("demo staff", UserRole::Staff)
        .await?;
    let suffix = ordo.clock.now();
    let mut products = Vec::new();
    for (sku, name, price_cents, stock) in shop.catalogue {
        let product = ordo
            .create_product(
                staff.actor(),
                &NewProduct {
                    sku: format!("DEMO-{sku}-{suffix}"),
                    name: name.to_owned(),
                    price_cents,
                    currency: shop.currency.to_owned(),
                    stock,
                },
            )
            .await?;
        products.push(product);
    }
    // The customers: made as the shop's backend makes them, or a plain one.
    let mut buyers: Vec<(i64, Option<NewShippingAddress>)> = Vec::new();
    for (external_id, name, phone, [province, city, district, line, postal]) in &shop.customers {
        let (customer, _) = ordo
            .upsert_customer(
                staff.actor(),
                &format!("{external_id}-{suffix}"),
                &CustomerChange {
                    display_name: (*name).to_owned(),
                    phone: Some(Some((*phone).to_owned())),
                    wechat_openid: None,
                },
            )
            .await?;
        let address = NewShippingAddress {
            name: (*name).to_owned(),
            phone: (*phone).to_owned(),
            country: Some("CN".to_owned()),
            province: Some((*province).to_owned()),
            city: Some((*city).to_owned()),
            district: Some((*district).to_owned()),
            town: None,
            line: (*line).to_owned(),
            postal_code: Some((*postal).to_owned()),
        };
        buyers.push((customer.id, Some(address)));
    }
    let (customer_id, customer_token) = match buyers.first() {
        Some((id, _)) => {
            let (_, token) = ordo
                .issue_customer_token(staff.actor(), *id, None, None)
                .await?;
            (*id, token)
        }
        None => {
            let (customer, token) = ordo
                .create_user_with_token("demo customer", UserRole::Customer)
                .await?;
            buyers.push((customer.id, None));
            (customer.id, token)
        }
    };
    let order = |who: usize, items: Vec<(i64, i64)>, note: &str| {
        let (user_id, address) = &buyers[who % buyers.len()];
        let mut new = NewOrder::from_lines(*user_id, &items, Some(note.to_owned()));
        new.shipping_address = address.clone();
        (Actor::Customer(*user_id), new)
    };
    let place = async |(actor, new): (Actor, NewOrder)| -> Result<PlacedOrder> {
        ordo.place_order(actor, &new).await
    };
    let unpaid = place(order(0, vec![(products[0].id, 2)], "left unpaid")).await?;
    let paid = place(order(
        1,
        vec![(products[0].id, 1), (products[1].id, 1)],
        "paid",
    ))
    .await?;
    pay(ordo, &paid.payment).await?;
    let shipped = place(order(0, vec![(products[2].id, 1)], "shipped")).await?;
    pay(ordo, &shipped.payment).await?;
    ordo.transition(
        Actor::Staff(staff.id),
        shipped.order.order.id,
        OrderStatus::Shipped,
        &TransitionInput {
            note: None,
            carrier: Some(shop.carrier.into()),
            tracking_number: Some(shop.tracking.into()),
            ..TransitionInput::default()
        },
    )
    .await?;

    println!("demo shop created");
    println!();
    println!("products:");
    for p in &products {
        let p = ordo.product(p.id).await?;
        println!(
            "  {:>4}  {:<24} {:>6} {}  stock {}",
            p.id, p.sku, p.price_cents, p.currency, p.stock
        );
    }
    if !shop.customers.is_empty() {
        println!("customers:");
        for (id, _) in &buyers {
            let c = ordo.customer(staff.actor(), *id).await?;
            println!(
                "  {:>4}  {:<24} {}  {}",
                c.id,
                c.external_id.unwrap_or_default(),
                c.display_name,
                c.phone.unwrap_or_default()
            );
        }
    }
    println!("orders:");
    for (placed, what) in [
        (&unpaid, "pending, unpaid"),
        (&paid, "paid"),
        (&shipped, "shipped"),
    ] {
        println!(
            "  {:>4}  {}  customer {}  {}",
            placed.order.order.id, placed.order.order.number, placed.order.order.user_id, what
        );
    }
    println!();
    println!(
        "staff token (user {}):    {}",
        staff.id,
        staff_token.expose()
    );
    println!(
        "customer token (user {}): {}",
        customer_id,
        customer_token.expose()
    );
    if locale == DemoLocale::ZhCn {
        println!();
        println!(
            "for a shop in China, set in ordo.toml (or ORDO_TIME_ZONE, ORDO_CURRENCY): the console then shows times in Beijing time and prices as ¥12.00"
        );
        println!("  time_zone = \"Asia/Shanghai\"");
        println!("  currency = \"CNY\"");
    }
    Ok(())
}
