//! `ordo demo`: a small shop to try ordo with: products, a staff and a customer token,
//! and orders in several statuses.

use crate::Ordo;
use crate::domain::{
    Actor, NewOrder, NewProduct, OrderStatus, ProviderEvent, ProviderStatus, UserRole,
};
use crate::error::Result;
use crate::orders::TransitionInput;

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

pub async fn run(ordo: &Ordo) -> Result<()> {
    let (staff, staff_token) = ordo
        .create_user_with_token("demo staff", UserRole::Staff)
        .await?;
    let (customer, customer_token) = ordo
        .create_user_with_token("demo customer", UserRole::Customer)
        .await?;
    let suffix = ordo.clock.now();
    let catalogue = [
        ("MUG", "Enamel mug", 1_200, 40),
        ("TEE", "Organic T-shirt", 2_500, 25),
        ("CAP", "Canvas cap", 1_800, 3),
    ];
    let mut products = Vec::new();
    for (sku, name, price_cents, stock) in catalogue {
        let product = ordo
            .create_product(
                staff.actor(),
                &NewProduct {
                    sku: format!("DEMO-{sku}-{suffix}"),
                    name: name.to_owned(),
                    price_cents,
                    currency: "EUR".to_owned(),
                    stock,
                },
            )
            .await?;
        products.push(product);
    }
    let buyer = customer.actor();
    let order = |items: Vec<(i64, i64)>, note: &str| {
        NewOrder::from_lines(customer.id, &items, Some(note.to_owned()))
    };
    let unpaid = ordo
        .place_order(buyer, &order(vec![(products[0].id, 2)], "left unpaid"))
        .await?;
    let paid = ordo
        .place_order(
            buyer,
            &order(vec![(products[0].id, 1), (products[1].id, 1)], "paid"),
        )
        .await?;
    pay(ordo, &paid.payment).await?;
    let shipped = ordo
        .place_order(buyer, &order(vec![(products[2].id, 1)], "shipped"))
        .await?;
    pay(ordo, &shipped.payment).await?;
    ordo.transition(
        Actor::Staff(staff.id),
        shipped.order.order.id,
        OrderStatus::Shipped,
        &TransitionInput {
            note: None,
            carrier: Some("DHL".into()),
            tracking_number: Some("JD0000000001".into()),
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
    println!("orders (customer {}):", customer.id);
    for (placed, what) in [
        (&unpaid, "pending, unpaid"),
        (&paid, "paid"),
        (&shipped, "shipped"),
    ] {
        println!(
            "  {:>4}  {}  {}",
            placed.order.order.id, placed.order.order.number, what
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
        customer.id,
        customer_token.expose()
    );
    Ok(())
}
