//! The catalogue and the stock ledger: products, staff adjustments, and the ledger view.
//! Reservation and release happen inside order transactions (see `orders`), through the
//! same ledger functions.

use crate::Ordo;
use crate::audit::{self, Object};
use crate::auth::require_staff;
use crate::db;
use crate::domain::{Actor, NewProduct, Product, ProductPatch, StockMovement, text};
use crate::error::{Error, Result};
use crate::events;
use serde_json::json;

/// Largest stock, price or adjustment accepted: far beyond any shop, far below overflow.
pub const MAX_AMOUNT: i64 = 1_000_000_000_000;

fn check_price(price_cents: i64) -> Result<()> {
    if !(0..=MAX_AMOUNT).contains(&price_cents) {
        return Err(Error::validation(
            "price_cents",
            format!("must be between 0 and {MAX_AMOUNT}"),
        ));
    }
    Ok(())
}

pub(crate) fn check_currency(currency: &str) -> Result<()> {
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(Error::validation(
            "currency",
            "must be an ISO 4217 code of three capital letters, such as EUR",
        ));
    }
    Ok(())
}

impl NewProduct {
    pub fn validate(&self) -> Result<()> {
        text::check_code("sku", &self.sku, 64)?;
        text::check_line("name", &self.name, 200)?;
        check_price(self.price_cents)?;
        check_currency(&self.currency)?;
        if !(0..=MAX_AMOUNT).contains(&self.stock) {
            return Err(Error::validation(
                "stock",
                format!("must be between 0 and {MAX_AMOUNT}"),
            ));
        }
        Ok(())
    }
}

impl Ordo {
    /// Adds a product; its opening stock is the first ledger row.
    pub async fn create_product(&self, actor: Actor, new: &NewProduct) -> Result<Product> {
        require_staff(actor)?;
        new.validate()?;
        let now = self.clock.now();
        let mut tx = self.db.write_tx().await?;
        let product = db::products::insert(&mut tx, new, now).await?;
        if new.stock > 0 {
            db::ledger::record_adjustment(
                &mut tx,
                product.id,
                new.stock,
                &actor.label(),
                Some("opening stock"),
                now,
            )
            .await?;
        }
        audit::record(
            &mut tx,
            actor,
            "product.create",
            Object::Product(product.id),
            json!({"sku": new.sku, "name": new.name, "price_cents": new.price_cents,
                   "currency": new.currency, "stock": new.stock}),
            now,
        )
        .await?;
        self.commit(tx).await?;
        Ok(product)
    }

    pub async fn update_product(
        &self,
        actor: Actor,
        id: i64,
        patch: &ProductPatch,
    ) -> Result<Product> {
        require_staff(actor)?;
        if let Some(name) = &patch.name {
            text::check_line("name", name, 200)?;
        }
        if let Some(price) = patch.price_cents {
            check_price(price)?;
        }
        let now = self.clock.now();
        let mut tx = self.db.write_tx().await?;
        let product = db::products::update(&mut tx, id, patch, now)
            .await?
            .ok_or(Error::NotFound { what: "product" })?;
        audit::record(
            &mut tx,
            actor,
            "product.update",
            Object::Product(id),
            json!({"name": patch.name, "price_cents": patch.price_cents, "active": patch.active}),
            now,
        )
        .await?;
        self.commit(tx).await?;
        Ok(product)
    }

    /// A staff adjustment: a ledger row and the stock changed by `delta`, never below zero.
    pub async fn adjust_stock(
        &self,
        actor: Actor,
        product_id: i64,
        delta: i64,
        reason: Option<&str>,
    ) -> Result<Product> {
        require_staff(actor)?;
        if delta == 0 || delta.abs() > MAX_AMOUNT {
            return Err(Error::validation(
                "delta",
                format!("must be non-zero and between -{MAX_AMOUNT} and {MAX_AMOUNT}"),
            ));
        }
        if let Some(reason) = reason {
            text::check_free("reason", reason, 500)?;
        }
        let now = self.clock.now();
        let mut tx = self.db.write_tx().await?;
        let Some(product) = db::products::change_stock(&mut tx, product_id, delta, now).await?
        else {
            let current = db::products::get(&mut tx, product_id)
                .await?
                .ok_or(Error::NotFound { what: "product" })?;
            return Err(Error::InsufficientStock {
                product_id,
                sku: current.sku,
                requested: -delta,
                available: current.stock,
            });
        };
        db::ledger::record_adjustment(&mut tx, product_id, delta, &actor.label(), reason, now)
            .await?;
        audit::record(
            &mut tx,
            actor,
            "stock.adjust",
            Object::Product(product_id),
            json!({"delta": delta, "reason": reason, "stock": product.stock}),
            now,
        )
        .await?;
        let stock_event = events::stock_events(&product, delta);
        events::record(
            &mut tx,
            self.db.dialect(),
            self.policy.events,
            stock_event.as_slice(),
            now,
        )
        .await?;
        self.commit(tx).await?;
        Ok(product)
    }

    pub async fn product(&self, id: i64) -> Result<Product> {
        let mut conn = self.db.pool().acquire().await?;
        db::products::get(&mut conn, id)
            .await?
            .ok_or(Error::NotFound { what: "product" })
    }

    /// Products in id order after the cursor `after_id` (0 for the start).
    pub async fn products(&self, after_id: i64, limit: i64) -> Result<Vec<Product>> {
        let mut conn = self.db.pool().acquire().await?;
        db::products::list(&mut conn, after_id, limit).await
    }

    /// A product's ledger, newest first, before the cursor `before_id` (`None` for the start).
    pub async fn stock_movements(
        &self,
        actor: Actor,
        product_id: i64,
        before_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<StockMovement>> {
        require_staff(actor)?;
        let mut conn = self.db.pool().acquire().await?;
        if db::products::get(&mut conn, product_id).await?.is_none() {
            return Err(Error::NotFound { what: "product" });
        }
        db::ledger::list_for_product(&mut conn, product_id, before_id.unwrap_or(i64::MAX), limit)
            .await
    }
}
