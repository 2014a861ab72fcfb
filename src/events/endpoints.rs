//! Webhook endpoints, deliveries and their attempts, as staff manage them: subscribe, change,
//! rotate a secret, replay a time range, redeliver. Every change is audited. Endpoint URLs
//! are checked against SSRF here and again at delivery time.

use super::EventType;
use super::signing;
use crate::Ordo;
use crate::audit::{self, Object};
use crate::auth::require_staff;
use crate::db::{self, webhooks as store};
use crate::domain::{Actor, Millis, format_rfc3339, time::serde_rfc3339};
use crate::error::{Error, Result};
use serde::Serialize;
use serde_json::json;
use std::net::IpAddr;

/// How long the secret a rotation replaces still signs.
pub const ROTATION_OVERLAP_MS: Millis = 24 * 3_600_000;
/// Most events one replay delivers again.
pub const MAX_REPLAY: i64 = 100_000;

/// What a new endpoint subscribes to.
#[derive(Debug, Clone, Default)]
pub struct NewEndpoint {
    pub url: String,
    /// `None`: every type.
    pub event_types: Option<Vec<String>>,
    pub description: Option<String>,
    pub ordered: bool,
}

/// A change to an endpoint; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct EndpointPatch {
    pub url: Option<String>,
    /// `Some(None)`: every type.
    pub event_types: Option<Option<Vec<String>>>,
    pub description: Option<Option<String>>,
    pub enabled: Option<bool>,
    pub ordered: Option<bool>,
}

/// An endpoint as staff see it (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Endpoint {
    pub id: i64,
    /// `webhook`, or `amqp` for the message broker.
    pub kind: String,
    pub url: String,
    pub description: Option<String>,
    /// The types it receives; `null`: every type.
    pub event_types: Option<Vec<String>>,
    /// One order's events arrive in `seq` order.
    pub ordered: bool,
    pub enabled: bool,
    /// Why it was disabled, when ordo disabled it (a 410 answer).
    pub disabled_reason: Option<String>,
    /// Until when the secret replaced by the last rotation still signs.
    #[serde(with = "serde_rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub previous_secret_until: Option<Millis>,
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Millis,
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Millis,
}

impl From<store::EndpointRow> for Endpoint {
    fn from(row: store::EndpointRow) -> Self {
        Endpoint {
            id: row.id,
            kind: row.kind,
            url: row.url,
            description: row.description,
            event_types: row.event_types.and_then(|t| serde_json::from_str(&t).ok()),
            ordered: row.ordered != 0,
            enabled: row.enabled != 0,
            disabled_reason: row.disabled_reason,
            previous_secret_until: row.previous_secret_until,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// One attempt at a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Attempt {
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub attempted_at: Millis,
    /// The HTTP status the receiver answered, if it answered.
    pub http_status: Option<i64>,
    pub duration_ms: i64,
    /// What went wrong, if anything (a timeout, a refused connection, a non-2xx answer).
    pub error: Option<String>,
    /// The first 1 KiB of the answer.
    pub response: Option<String>,
}

/// One event's delivery to one endpoint, with its attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Delivery {
    pub id: i64,
    pub endpoint_id: i64,
    /// The event's id: the `webhook-id` of every attempt.
    pub event_id: String,
    pub event_type: String,
    pub order_id: Option<i64>,
    /// pending, succeeded, failed (will be retried) or dead (gave up).
    pub status: String,
    pub attempt_count: i64,
    #[serde(with = "serde_rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_attempt_at: Option<Millis>,
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Millis,
    pub attempts: Vec<Attempt>,
}

/// Filters of the deliveries list.
pub use store::DeliveryFilter;

/// The statuses a delivery can be in.
pub const DELIVERY_STATUSES: [&str; 4] = ["pending", "succeeded", "failed", "dead"];

/// What an endpoint URL may look like (the OpenAPI document states the same pattern):
/// `http(s)://`, a host name whose last label starts with a letter or a dotted IPv4
/// address, an optional port, a path and a query of URL characters.
pub const URL_PATTERN: &str = r"^https?://((([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?\.)*[A-Za-z]([A-Za-z0-9-]*[A-Za-z0-9])?)|((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}))(:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?(/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*)?(\?[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*)?$";

/// Is this address one a webhook must not reach (unless private addresses are allowed)?
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT
                || (a == 192 && b == 0 && v4.octets()[2] == 0) // IETF protocol assignments
                || a >= 240 // reserved
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || (first & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (v6.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0]) // NAT64 of anything
        }
    }
}

/// Checks an endpoint URL: `https` (or `http` when private addresses are allowed), a host,
/// no credentials, and every address it resolves to public (unless allowed).
pub async fn check_url(field: &str, url: &str, allow_private: bool) -> Result<reqwest::Url> {
    let bad = |why: &str| Error::validation(field, why.to_owned());
    if url.len() > 2000 {
        return Err(bad("at most 2000 characters"));
    }
    static SHAPE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let shape = SHAPE.get_or_init(|| regex::Regex::new(URL_PATTERN).expect("a valid pattern"));
    if !shape.is_match(url) {
        return Err(bad(
            "not a URL ordo posts to: http(s)://host[:port]/path, such as https://shop.example/hooks/ordo",
        ));
    }
    let parsed = reqwest::Url::parse(url.trim())
        .map_err(|_| bad("not a URL, such as https://shop.example/hooks/ordo"))?;
    match parsed.scheme() {
        "https" => {}
        "http" if allow_private => {}
        "http" => return Err(bad("must be https")),
        _ => return Err(bad("must be an https URL")),
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad(
            "must not carry credentials; the signature authenticates ordo",
        ));
    }
    let host = parsed
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| bad("must name a host"))?;
    if allow_private {
        return Ok(parsed);
    }
    let addresses: Vec<IpAddr> = super::resolver::lookup(host)
        .await
        .map_err(|_| bad("its host does not resolve"))?;
    if addresses.is_empty() {
        return Err(bad("its host does not resolve"));
    }
    if addresses.iter().any(|ip| is_private(*ip)) {
        return Err(bad(
            "resolves to a loopback, private or link-local address; set webhook_allow_private = true for development",
        ));
    }
    Ok(parsed)
}

fn check_event_types(types: &[String]) -> Result<String> {
    if types.is_empty() {
        return Err(Error::validation(
            "event_types",
            "give at least one type, or leave it out for every type",
        ));
    }
    for (i, t) in types.iter().enumerate() {
        EventType::parse_field(&format!("event_types[{i}]"), t)?;
    }
    let mut types = types.to_vec();
    types.sort();
    types.dedup();
    Ok(serde_json::to_string(&types).unwrap_or_default())
}

fn check_description(description: &str) -> Result<()> {
    crate::domain::text::check_free("description", description, 500)
}

impl Ordo {
    /// Subscribes a webhook endpoint (staff); returns it with its secret, shown only now.
    pub async fn create_endpoint(
        &self,
        actor: Actor,
        new: &NewEndpoint,
    ) -> Result<(Endpoint, String)> {
        require_staff(actor)?;
        let url = check_url("url", &new.url, self.policy.webhook_allow_private).await?;
        let types = new
            .event_types
            .as_deref()
            .map(check_event_types)
            .transpose()?;
        if let Some(d) = &new.description {
            check_description(d)?;
        }
        let secret = signing::generate_secret();
        let now = self.clock.now();
        let mut tx = self.db.write_tx().await?;
        let row = store::insert_endpoint(
            &mut tx,
            &store::NewEndpointRow {
                kind: "webhook",
                url: url.as_str(),
                description: new.description.as_deref(),
                event_types: types.as_deref(),
                ordered: new.ordered,
                secret: &secret,
                now,
            },
        )
        .await?;
        audit::record(
            &mut tx,
            actor,
            "webhook_endpoint.create",
            Object::WebhookEndpoint(row.id),
            json!({"url": row.url, "event_types": new.event_types, "ordered": new.ordered}),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok((row.into(), secret))
    }

    /// The endpoints (staff), deleted ones left out.
    pub async fn endpoints(&self, actor: Actor) -> Result<Vec<Endpoint>> {
        require_staff(actor)?;
        let mut conn = self.db.pool().acquire().await?;
        Ok(store::endpoints(&mut conn)
            .await?
            .into_iter()
            .map(Endpoint::from)
            .collect())
    }

    pub async fn endpoint(&self, actor: Actor, id: i64) -> Result<Endpoint> {
        require_staff(actor)?;
        let mut conn = self.db.pool().acquire().await?;
        store::endpoint(&mut conn, id)
            .await?
            .filter(|e| e.deleted_at.is_none())
            .map(Endpoint::from)
            .ok_or(Error::NotFound {
                what: "webhook endpoint",
            })
    }

    /// Changes an endpoint (staff). Enabling it again clears why it was disabled.
    pub async fn update_endpoint(
        &self,
        actor: Actor,
        id: i64,
        patch: &EndpointPatch,
    ) -> Result<Endpoint> {
        require_staff(actor)?;
        let url = match &patch.url {
            Some(url) => Some(check_url("url", url, self.policy.webhook_allow_private).await?),
            None => None,
        };
        let types = match &patch.event_types {
            Some(Some(types)) => Some(Some(check_event_types(types)?)),
            Some(None) => Some(None),
            None => None,
        };
        if let Some(Some(d)) = &patch.description {
            check_description(d)?;
        }
        let now = self.clock.now();
        let mut tx = self.db.write_tx().await?;
        let row = store::update_endpoint(
            &mut tx,
            id,
            &store::EndpointChange {
                url: url.as_ref().map(|u| u.as_str()),
                description: patch.description.as_ref().map(|d| d.as_deref()),
                event_types: types.as_ref().map(|t| t.as_deref()),
                enabled: patch.enabled,
                ordered: patch.ordered,
            },
            now,
        )
        .await?
        .ok_or(Error::NotFound {
            what: "webhook endpoint",
        })?;
        audit::record(
            &mut tx,
            actor,
            "webhook_endpoint.update",
            Object::WebhookEndpoint(id),
            json!({"url": url.map(|u| u.to_string()), "event_types": patch.event_types,
                   "enabled": patch.enabled, "ordered": patch.ordered}),
            now,
        )
        .await?;
        self.commit(tx).await?;
        Ok(row.into())
    }

    /// Deletes an endpoint (staff): nothing more is delivered to it; its deliveries stay
    /// listed.
    pub async fn delete_endpoint(&self, actor: Actor, id: i64) -> Result<()> {
        require_staff(actor)?;
        let now = self.clock.now();
        let mut tx = self.db.write_tx().await?;
        if !store::delete_endpoint(&mut tx, id, now).await? {
            return Err(Error::NotFound {
                what: "webhook endpoint",
            });
        }
        audit::record(
            &mut tx,
            actor,
            "webhook_endpoint.delete",
            Object::WebhookEndpoint(id),
            json!({}),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A new secret for an endpoint (staff), shown only now; the old one also signs for
    /// 24 hours, so receivers can switch without losing an event.
    pub async fn rotate_endpoint_secret(
        &self,
        actor: Actor,
        id: i64,
    ) -> Result<(Endpoint, String)> {
        require_staff(actor)?;
        let secret = signing::generate_secret();
        let now = self.clock.now();
        let mut tx = self.db.write_tx().await?;
        let row = store::rotate_secret(&mut tx, id, &secret, now + ROTATION_OVERLAP_MS, now)
            .await?
            .ok_or(Error::NotFound {
                what: "webhook endpoint",
            })?;
        audit::record(
            &mut tx,
            actor,
            "webhook_endpoint.rotate_secret",
            Object::WebhookEndpoint(id),
            json!({"previous_secret_until": format_rfc3339(now + ROTATION_OVERLAP_MS)}),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok((row.into(), secret))
    }

    /// Delivers every event written in `[since, until)` that the endpoint wants again
    /// (staff); returns how many. At most [`MAX_REPLAY`] events at a time.
    pub async fn replay_events(
        &self,
        actor: Actor,
        id: i64,
        since: Millis,
        until: Millis,
    ) -> Result<u64> {
        require_staff(actor)?;
        if since >= until {
            return Err(Error::validation(
                "until",
                "must be after since (the range is since ≤ t < until)",
            ));
        }
        let now = self.clock.now();
        let mut tx = self.db.write_tx().await?;
        let endpoint = store::endpoint(&mut tx, id)
            .await?
            .filter(|e| e.deleted_at.is_none())
            .ok_or(Error::NotFound {
                what: "webhook endpoint",
            })?;
        let count = store::replay(
            &mut tx,
            self.db.dialect(),
            endpoint.id,
            since,
            until,
            MAX_REPLAY,
            now,
        )
        .await?;
        audit::record(
            &mut tx,
            actor,
            "webhook_endpoint.replay",
            Object::WebhookEndpoint(id),
            json!({"since": format_rfc3339(since), "until": format_rfc3339(until), "events": count}),
            now,
        )
        .await?;
        self.commit(tx).await?;
        Ok(count)
    }

    /// Deliveries, newest first, each with its attempts (staff).
    pub async fn deliveries(&self, actor: Actor, filter: &DeliveryFilter) -> Result<Vec<Delivery>> {
        require_staff(actor)?;
        if let Some(status) = &filter.status
            && !DELIVERY_STATUSES.contains(&status.as_str())
        {
            return Err(Error::validation(
                "status",
                format!("must be one of: {}", DELIVERY_STATUSES.join(", ")),
            ));
        }
        if let Some(t) = &filter.event_type {
            EventType::parse_field("event_type", t)?;
        }
        let mut conn = self.db.pool().acquire().await?;
        let rows = store::deliveries(&mut conn, filter).await?;
        self.with_attempts(&mut conn, rows).await
    }

    pub async fn delivery(&self, actor: Actor, id: i64) -> Result<Delivery> {
        require_staff(actor)?;
        let mut conn = self.db.pool().acquire().await?;
        let row = store::delivery(&mut conn, id)
            .await?
            .ok_or(Error::NotFound {
                what: "webhook delivery",
            })?;
        Ok(self
            .with_attempts(&mut conn, vec![row])
            .await?
            .pop()
            .expect("one delivery"))
    }

    async fn with_attempts(
        &self,
        conn: &mut db::Conn,
        rows: Vec<store::DeliveryRow>,
    ) -> Result<Vec<Delivery>> {
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let mut attempts = if ids.is_empty() {
            Vec::new()
        } else {
            store::attempts(
                conn,
                self.db.dialect(),
                &serde_json::to_string(&ids).unwrap_or_default(),
            )
            .await?
        };
        Ok(rows
            .into_iter()
            .map(|row| {
                let mine: Vec<Attempt> = attempts
                    .extract_if(.., |a| a.delivery_id == row.id)
                    .map(|a| Attempt {
                        attempted_at: a.attempted_at,
                        http_status: a.http_status,
                        duration_ms: a.duration_ms,
                        error: a.error,
                        response: a.response,
                    })
                    .collect();
                Delivery {
                    id: row.id,
                    endpoint_id: row.endpoint_id,
                    event_id: row.event_id,
                    event_type: row.event_type,
                    order_id: row.order_id,
                    status: row.status,
                    attempt_count: row.attempts,
                    next_attempt_at: row.next_attempt_at,
                    created_at: row.created_at,
                    attempts: mine,
                }
            })
            .collect())
    }

    /// Tries a delivery again now (staff), with the same `webhook-id`. A delivery whose
    /// endpoint was deleted, or whose attempt is in flight, cannot be.
    pub async fn redeliver(&self, actor: Actor, id: i64) -> Result<Delivery> {
        require_staff(actor)?;
        let now = self.clock.now();
        let mut tx = self.db.write_tx().await?;
        let row = store::delivery(&mut tx, id).await?.ok_or(Error::NotFound {
            what: "webhook delivery",
        })?;
        let endpoint = store::endpoint(&mut tx, row.endpoint_id).await?;
        match endpoint {
            Some(e) if e.deleted_at.is_some() => {
                return Err(Error::Conflict(format!(
                    "webhook endpoint {} was deleted; its deliveries cannot be redelivered",
                    e.id
                )));
            }
            Some(e) if e.enabled == 0 => {
                return Err(Error::Conflict(format!(
                    "webhook endpoint {} is disabled; enable it first",
                    e.id
                )));
            }
            None => {
                return Err(Error::NotFound {
                    what: "webhook endpoint",
                });
            }
            Some(_) => {}
        }
        if !store::redeliver(&mut tx, id, now).await? {
            return Err(Error::Conflict(
                "an attempt of this delivery is in flight; retry in a few seconds".to_owned(),
            ));
        }
        store::notify(&mut tx, self.db.dialect()).await?;
        audit::record(
            &mut tx,
            actor,
            "webhook_delivery.redeliver",
            Object::WebhookDelivery(id),
            json!({"event_id": row.event_id, "endpoint_id": row.endpoint_id}),
            now,
        )
        .await?;
        self.commit(tx).await?;
        self.delivery(actor, id).await
    }

    /// The age of the oldest event some enabled endpoint has not yet received.
    pub async fn oldest_undelivered_age_ms(&self) -> Result<Option<Millis>> {
        let mut conn = self.db.pool().acquire().await?;
        let now = self.clock.now();
        Ok(store::oldest_undelivered(&mut conn)
            .await?
            .map(|at| now - at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "64:ff9b::7f00:1",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "93.184.216.34",
            "2606:2800:220:1:248:1893:25c8:1946",
            "8.8.8.8",
        ] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn urls_are_checked() {
        for (url, allow) in [
            ("http://example.com/hook", false),
            ("ftp://example.com/hook", false),
            ("https://127.0.0.1/hook", false),
            ("https://[::1]/hook", false),
            ("https://localhost/hook", false),
            ("https://user:pw@8.8.8.8/hook", false),
            ("not a url", true),
            ("https://10.0.0.1:8443/x", false),
        ] {
            assert!(check_url("url", url, allow).await.is_err(), "{url}");
        }
        assert!(
            check_url("url", "https://8.8.8.8/hook", false)
                .await
                .is_ok()
        );
        assert!(
            check_url("url", "http://127.0.0.1:9/hook", true)
                .await
                .is_ok()
        );
    }
}
