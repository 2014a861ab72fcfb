//! Customers as the shop's own backend knows them (README: Customers): created or updated by
//! the shop's id for them (`external_id`), given tokens to place orders with, searched by
//! name, phone or that id, and erased on request (PIPL, GDPR): the name, phone and openid
//! replaced, and the addresses of its finished orders, wherever they were written (the
//! orders, the events that carried them, what webhook receivers answered), while amounts,
//! history and the ledger stay. Every change is a staff action in the audit log, which
//! records which fields changed and never their values.

use crate::Ordo;
use crate::audit::{self, Object};
use crate::auth::{ApiToken, NewToken, TokenInfo, require_staff};
use crate::db;
use crate::domain::address::{check_openid, check_phone};
use crate::domain::text::{check_code, check_line};
use crate::domain::{Actor, Customer, Millis, ShippingAddress};
use crate::error::{Error, Result};
use serde::Serialize;
use serde_json::{Value, json};

/// What a customer's name becomes when its personal data is erased.
pub const ERASED_NAME: &str = "[erased]";

/// What the shop's backend says of a customer. `None` leaves a field as it is; `Some(None)`
/// clears it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomerChange {
    pub display_name: String,
    pub phone: Option<Option<String>>,
    pub wechat_openid: Option<Option<String>>,
}

/// What an erasure rewrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Erasure {
    pub customer: Customer,
    /// Orders whose address was replaced.
    pub orders: usize,
    /// Events whose copy of an address was replaced.
    pub events: usize,
}

/// A shop's id for a customer: 1 to 128 characters, no spaces or control characters.
pub fn check_external_id(field: &str, external_id: &str) -> Result<()> {
    check_code(field, external_id, 128)
}

impl CustomerChange {
    fn validated(&self) -> Result<CustomerChange> {
        check_line("display_name", &self.display_name, 100)?;
        let phone = match &self.phone {
            Some(Some(phone)) => Some(Some(check_phone("phone", phone)?)),
            other => other.clone(),
        };
        if let Some(Some(openid)) = &self.wechat_openid {
            check_openid("wechat_openid", openid)?;
        }
        Ok(CustomerChange {
            display_name: self.display_name.trim().to_owned(),
            phone,
            wechat_openid: self.wechat_openid.clone(),
        })
    }

    /// The fields this change sets, for the audit log.
    fn fields(&self) -> Vec<&'static str> {
        let mut fields = vec!["display_name"];
        if self.phone.is_some() {
            fields.push("phone");
        }
        if self.wechat_openid.is_some() {
            fields.push("wechat_openid");
        }
        fields
    }
}

/// Replaces every shipping address in an event's data with its erased form.
fn scrub(value: &mut Value) -> bool {
    match value {
        Value::Object(fields) => {
            let mut changed = false;
            for (key, field) in fields.iter_mut() {
                if key == "shipping_address" && field.is_object() {
                    let erased = serde_json::from_value::<ShippingAddress>(field.clone())
                        .map(|a| a.erased())
                        .map(|a| serde_json::to_value(a).unwrap_or(Value::Null))
                        .unwrap_or(Value::Null);
                    if *field != erased {
                        *field = erased;
                        changed = true;
                    }
                } else {
                    changed |= scrub(field);
                }
            }
            changed
        }
        Value::Array(items) => items.iter_mut().fold(false, |c, v| scrub(v) | c),
        _ => false,
    }
}

impl Ordo {
    /// Creates the customer with this external id, or updates it (staff): the same
    /// customer every time, however many calls race. Returns it and whether it was created.
    pub async fn upsert_customer(
        &self,
        actor: Actor,
        external_id: &str,
        change: &CustomerChange,
    ) -> Result<(Customer, bool)> {
        require_staff(actor)?;
        check_external_id("external_id", external_id)?;
        let change = change.validated()?;
        let fields = db::customers::CustomerFields {
            display_name: &change.display_name,
            phone: change.phone.as_ref().map(Option::as_deref),
            wechat_openid: change.wechat_openid.as_ref().map(Option::as_deref),
        };
        let now = self.clock.now();
        let mut tx = self.db.write_tx().await?;
        let (customer, created) =
            match db::customers::insert_by_external_id(&mut tx, external_id, &fields, now).await? {
                Some(customer) => (customer, true),
                None => {
                    match db::customers::update_by_external_id(&mut tx, external_id, &fields, now)
                        .await?
                    {
                        Some(customer) => (customer, false),
                        None => {
                            let role =
                                db::customers::role_of_external_id(&mut tx, external_id).await?;
                            return Err(Error::Conflict(format!(
                                "external id {external_id:?} belongs to a {} user, not a customer",
                                role.unwrap_or_else(|| "vanished".to_owned())
                            )));
                        }
                    }
                }
            };
        audit::record(
            &mut tx,
            actor,
            "customer.upsert",
            Object::Customer(customer.id),
            json!({"external_id": external_id, "created": created, "fields": change.fields()}),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok((customer, created))
    }

    /// One customer (staff).
    pub async fn customer(&self, actor: Actor, id: i64) -> Result<Customer> {
        require_staff(actor)?;
        let mut conn = self.db.pool().acquire().await?;
        db::customers::get(&mut conn, id)
            .await?
            .ok_or(Error::NotFound { what: "customer" })
    }

    /// Customers newest first, before the cursor `before_id` (staff): with `q`, those whose
    /// external id or phone is `q`, whose phone holds `q`'s digits (four or more), or whose
    /// name contains `q`.
    pub async fn customers(
        &self,
        actor: Actor,
        q: Option<&str>,
        before_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Customer>> {
        require_staff(actor)?;
        let q = q.map(str::trim).filter(|q| !q.is_empty());
        if let Some(q) = q
            && (q.chars().count() > 100 || q.chars().any(char::is_control))
        {
            return Err(Error::validation(
                "q",
                "at most 100 characters, no control characters",
            ));
        }
        if !(1..=200).contains(&limit) {
            return Err(Error::validation("limit", "must be between 1 and 200"));
        }
        let mut conn = self.db.pool().acquire().await?;
        db::customers::search(&mut conn, q, before_id, limit).await
    }

    /// The customers among `ids`, for pages that name the customers of orders (staff).
    pub async fn customers_by_ids(&self, actor: Actor, ids: &[i64]) -> Result<Vec<Customer>> {
        require_staff(actor)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.db.pool().acquire().await?;
        db::customers::by_ids(&mut conn, self.db.dialect(), &crate::orders::ids_json(ids)).await
    }

    /// A token for a customer (staff), shown once: what the shop's backend hands the
    /// customer's browser or mini-program after signing them in.
    pub async fn issue_customer_token(
        &self,
        actor: Actor,
        id: i64,
        name: Option<String>,
        expires_in: Option<Millis>,
    ) -> Result<(TokenInfo, ApiToken)> {
        require_staff(actor)?;
        let customer = self.customer(actor, id).await?;
        let name = name.unwrap_or_else(|| match &customer.external_id {
            Some(external) => format!("customer {external}"),
            None => format!("customer {}", customer.id),
        });
        self.issue_token(
            actor,
            &NewToken {
                name,
                role: None,
                user_id: Some(customer.id),
                expires_in,
            },
        )
        .await
    }

    /// Erases a customer's personal data (staff): its name, phone and WeChat openid, and
    /// the address of every order of its, in the orders and in the events that carried
    /// them; amounts, history and the ledger stay. Refused (409, naming them) while an
    /// order of its is still open.
    pub async fn erase_customer(&self, actor: Actor, id: i64) -> Result<Erasure> {
        require_staff(actor)?;
        let now = self.clock.now();
        let dialect = self.db.dialect();
        let mut tx = self.db.write_tx().await?;
        // Locked like a placement locks it, so no order of its is placed meanwhile.
        db::placement::lock_customers(&mut tx, dialect, &format!("[{id}]")).await?;
        if db::customers::get(&mut tx, id).await?.is_none() {
            return Err(Error::NotFound { what: "customer" });
        }
        let open = db::customers::open_orders(&mut tx, id).await?;
        if !open.is_empty() {
            return Err(Error::Conflict(format!(
                "customer {id} has orders still open: {}; erase once they are finished (completed, cancelled or refunded)",
                open.iter()
                    .map(|(oid, number, status)| format!("{number} (id {oid}, {status})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        db::customers::erase(&mut tx, id, ERASED_NAME, now).await?;
        let addresses: Vec<Value> = db::customers::addresses_of(&mut tx, id)
            .await?
            .into_iter()
            .filter_map(|(order_id, text)| {
                let address: ShippingAddress = serde_json::from_str(&text).ok()?;
                (!address.erased)
                    .then(|| json!({"id": order_id, "address": address.erased().to_json()}))
            })
            .collect();
        if !addresses.is_empty() {
            db::customers::set_addresses(&mut tx, dialect, &json!(addresses).to_string()).await?;
        }
        let mut events = 0;
        let rewritten: Vec<Value> = db::customers::events_of(&mut tx, id)
            .await?
            .into_iter()
            .filter_map(|(event_id, data)| {
                let mut value: Value = serde_json::from_str(&data).ok()?;
                scrub(&mut value).then(|| json!({"id": event_id, "data": value.to_string()}))
            })
            .collect();
        for chunk in rewritten.chunks(500) {
            events += chunk.len();
            db::customers::set_event_data(&mut tx, dialect, &json!(chunk).to_string()).await?;
        }
        db::customers::forget_traces(&mut tx, id).await?;
        audit::record(
            &mut tx,
            actor,
            "customer.erase",
            Object::Customer(id),
            json!({"orders": addresses.len(), "events": events}),
            now,
        )
        .await?;
        let customer = db::customers::get(&mut tx, id)
            .await?
            .ok_or(Error::NotFound { what: "customer" })?;
        tx.commit().await?;
        self.db.forget_overwritten().await;
        Ok(Erasure {
            customer,
            orders: addresses.len(),
            events,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_scrubbed_wherever_they_sit() {
        let address = json!({"name": "王小明", "phone": "13800138000", "country": "CN",
            "province": "上海市", "city": "上海市", "district": null, "town": null,
            "line": "世纪大道 100 号", "postal_code": "200120"});
        let mut data = json!({"order": {"id": 1, "shipping_address": address},
                              "seq": 2, "list": [{"shipping_address": address}]});
        assert!(scrub(&mut data));
        let text = data.to_string();
        assert!(
            !text.contains("13800138000") && !text.contains("世纪大道"),
            "{text}"
        );
        assert_eq!(data["order"]["shipping_address"]["erased"], true);
        assert_eq!(data["order"]["shipping_address"]["country"], "CN");
        assert!(!scrub(&mut data), "scrubbing twice changes nothing");
        let mut none = json!({"order": {"shipping_address": null}});
        assert!(!scrub(&mut none));
    }
}
