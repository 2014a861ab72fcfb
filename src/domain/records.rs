//! The records ordo keeps, and the inputs that create them (`NewOrder` makes an `Order`).

use super::OrderStatus;
use super::time::{Millis, serde_rfc3339};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Who performs an action; recorded in history and the stock ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    Customer(i64),
    Staff(i64),
    /// The unpaid-order sweep.
    Expiry,
    /// The payment provider, through the webhook.
    Payment,
    /// An operator at the host's command line (`ordo token create`, `ordo
    /// cancel-unpaid-orders`): trusted like staff, recorded as `cli:<login>`.
    Operator,
    /// The built-in scheduler.
    Scheduler,
}

impl Actor {
    pub fn label(&self) -> String {
        match self {
            Actor::Customer(id) | Actor::Staff(id) => format!("user:{id}"),
            Actor::Expiry => "system:expiry".to_owned(),
            Actor::Payment => "system:payment".to_owned(),
            Actor::Scheduler => "system:scheduler".to_owned(),
            Actor::Operator => {
                let login = std::env::var("USER")
                    .or_else(|_| std::env::var("LOGNAME"))
                    .unwrap_or_default();
                let login: String = login
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                    .take(64)
                    .collect();
                if login.is_empty() {
                    "cli".to_owned()
                } else {
                    format!("cli:{login}")
                }
            }
        }
    }

    /// Staff, or an operator at the command line: may do what staff do.
    pub fn is_staff(&self) -> bool {
        matches!(self, Actor::Staff(_) | Actor::Operator)
    }

    /// The user behind this actor, if it is one.
    pub fn user_id(&self) -> Option<i64> {
        match self {
            Actor::Customer(id) | Actor::Staff(id) => Some(*id),
            _ => None,
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserRole {
    Customer,
    Staff,
}

impl UserRole {
    pub fn as_str(self) -> &'static str {
        match self {
            UserRole::Customer => "customer",
            UserRole::Staff => "staff",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "customer" => Some(UserRole::Customer),
            "staff" => Some(UserRole::Staff),
            _ => None,
        }
    }
}

/// A customer as the shop's backend knows it: a user with the customer role, its display
/// name, the shop's own id for it, its phone and WeChat openid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Customer {
    pub id: i64,
    /// The shop's own id of this customer (unique); `null` for customers made otherwise
    /// (`ordo token create`, `POST /tokens`).
    pub external_id: Option<String>,
    pub display_name: String,
    pub phone: Option<String>,
    /// Pays through WeChat Pay JSAPI when a payment is opened without an openid.
    pub wechat_openid: Option<String>,
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Millis,
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Millis,
    /// When the customer's personal data was erased, if it was.
    #[serde(with = "serde_rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub erased_at: Option<Millis>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub role: UserRole,
}

impl User {
    pub fn actor(&self) -> Actor {
        match self.role {
            UserRole::Customer => Actor::Customer(self.id),
            UserRole::Staff => Actor::Staff(self.id),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Product {
    pub id: i64,
    pub sku: String,
    pub name: String,
    pub price_cents: i64,
    pub currency: String,
    pub stock: i64,
    pub sales_count: i64,
    #[sqlx(try_from = "crate::db::DbFlag")]
    pub active: bool,
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Millis,
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProduct {
    /// Unique; no spaces.
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = "^[^\\s\\u0000-\\u001F\\u007F-\\u009F]+$"
    )]
    pub sku: String,
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub name: String,
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    #[serde(deserialize_with = "crate::domain::whole::value")]
    pub price_cents: i64,
    /// ISO 4217, such as EUR.
    #[schema(pattern = "^[A-Z]{3}$", example = "EUR")]
    pub currency: String,
    /// Opening stock: the ledger's first row.
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    #[serde(deserialize_with = "crate::domain::whole::value")]
    pub stock: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductPatch {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub name: Option<String>,
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    #[serde(default, deserialize_with = "crate::domain::whole::option")]
    pub price_cents: Option<i64>,
    /// Whether it is on sale.
    pub active: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MovementReason {
    Reserve,
    Release,
    Adjust,
    Restock,
}

impl MovementReason {
    pub fn as_str(self) -> &'static str {
        match self {
            MovementReason::Reserve => "reserve",
            MovementReason::Release => "release",
            MovementReason::Adjust => "adjust",
            MovementReason::Restock => "restock",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct StockMovement {
    pub id: i64,
    pub product_id: i64,
    pub order_id: Option<i64>,
    pub delta: i64,
    pub reason: String,
    pub actor: String,
    pub note: Option<String>,
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Millis,
}

/// One line of a new order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderLine {
    #[schema(minimum = 1)]
    #[serde(deserialize_with = "crate::domain::whole::value")]
    pub product_id: i64,
    /// Units of this product; the whole order may hold at most `max_units_per_order`.
    #[schema(minimum = 1, maximum = 1_000_000)]
    #[serde(deserialize_with = "crate::domain::whole::value")]
    pub quantity: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    pub user_id: i64,
    pub items: Vec<OrderLine>,
    pub note: Option<String>,
    /// Where it ships to, as the request gave it (checked when the order is placed).
    pub shipping_address: Option<super::NewShippingAddress>,
}

/// One line of an order, with the product's SKU and name as they were when it was
/// ordered (a product renamed later leaves it as it was).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct OrderItem {
    pub product_id: i64,
    pub sku: String,
    pub name: String,
    pub quantity: i64,
    pub unit_price_cents: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Order {
    pub id: i64,
    pub number: String,
    pub user_id: i64,
    #[sqlx(try_from = "String")]
    pub status: OrderStatus,
    pub total_cents: i64,
    pub currency: String,
    pub note: Option<String>,
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Millis,
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Millis,
    #[serde(with = "serde_rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub paid_at: Option<Millis>,
    #[serde(with = "serde_rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub completed_at: Option<Millis>,
    #[serde(with = "serde_rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub cancelled_at: Option<Millis>,
    pub cancel_reason: Option<String>,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    /// Where it ships to, as given when it was placed (or as staff corrected it before it
    /// shipped); `null` when none was given.
    #[sqlx(try_from = "crate::db::JsonColumn")]
    pub shipping_address: Option<super::ShippingAddress>,
}

impl Order {
    /// The reference ordo gives a provider for the `nth` payment of this order (WeChat Pay
    /// and Alipay `out_trade_no`, the Stripe Idempotency-Key): the order number's letters
    /// and digits, `_`, `nth`, which both out_trade_no alphabets allow.
    pub fn payment_reference(&self, nth: usize) -> String {
        let number: String = self
            .number
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        format!("{number}_{nth}")
    }
}

/// An order with its items and payments, as `GET /orders/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct OrderDetails {
    #[serde(flatten)]
    pub order: Order,
    pub items: Vec<OrderItem>,
    pub payments: Vec<Payment>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Pending,
    Succeeded,
    Failed,
    Expired,
    Cancelled,
    Refunded,
}

impl PaymentStatus {
    pub const ALL: [PaymentStatus; 6] = [
        PaymentStatus::Pending,
        PaymentStatus::Succeeded,
        PaymentStatus::Failed,
        PaymentStatus::Expired,
        PaymentStatus::Cancelled,
        PaymentStatus::Refunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Pending => "pending",
            PaymentStatus::Succeeded => "succeeded",
            PaymentStatus::Failed => "failed",
            PaymentStatus::Expired => "expired",
            PaymentStatus::Cancelled => "cancelled",
            PaymentStatus::Refunded => "refunded",
        }
    }
}

impl TryFrom<String> for PaymentStatus {
    type Error = crate::domain::lifecycle::UnknownStatus;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        PaymentStatus::ALL
            .into_iter()
            .find(|s| s.as_str() == value)
            .ok_or(crate::domain::lifecycle::UnknownStatus(value))
    }
}

/// Who takes the money of a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentProvider {
    /// ordo's own signed JSON webhook (`POST /payments/webhook`): tests, and shops with a
    /// gateway of their own.
    Manual,
    /// WeChat Pay API v3, JSAPI (mini-programs and the WeChat browser).
    Wechatpay,
    /// Alipay, `alipay.trade.precreate` (a QR code to scan).
    Alipay,
    /// Stripe PaymentIntents.
    Stripe,
}

impl PaymentProvider {
    pub const ALL: [PaymentProvider; 4] = [
        PaymentProvider::Manual,
        PaymentProvider::Wechatpay,
        PaymentProvider::Alipay,
        PaymentProvider::Stripe,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PaymentProvider::Manual => "manual",
            PaymentProvider::Wechatpay => "wechatpay",
            PaymentProvider::Alipay => "alipay",
            PaymentProvider::Stripe => "stripe",
        }
    }

    pub fn parse(s: &str) -> Option<PaymentProvider> {
        PaymentProvider::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// The payment method recorded on its payments.
    pub fn method(self) -> &'static str {
        match self {
            PaymentProvider::Manual | PaymentProvider::Stripe => "card",
            PaymentProvider::Wechatpay => "wechatpay_jsapi",
            PaymentProvider::Alipay => "alipay_qr",
        }
    }

    /// Whether it takes money in `currency` (WeChat Pay and Alipay take CNY only).
    pub fn takes_currency(self, currency: &str) -> bool {
        match self {
            PaymentProvider::Wechatpay | PaymentProvider::Alipay => currency == "CNY",
            PaymentProvider::Manual | PaymentProvider::Stripe => true,
        }
    }

    /// Whether the provider knows a payment by the reference ordo gives it (WeChat Pay's
    /// and Alipay's out_trade_no) rather than by an id of its own (a Stripe PaymentIntent).
    pub fn ref_is_merchant_ref(self) -> bool {
        matches!(self, PaymentProvider::Wechatpay | PaymentProvider::Alipay)
    }
}

impl fmt::Display for PaymentProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for PaymentProvider {
    type Error = crate::domain::lifecycle::UnknownStatus;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        PaymentProvider::parse(&value).ok_or(crate::domain::lifecycle::UnknownStatus(value))
    }
}

/// Where a refund through the provider stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RefundState {
    /// To be sent to the provider (or sent, with no answer yet).
    Requested,
    /// The provider took it and has not confirmed it yet.
    Processing,
    Succeeded,
    /// The provider said no (`refund_error` says why); it can be tried again.
    Refused,
}

impl RefundState {
    pub const ALL: [RefundState; 4] = [
        RefundState::Requested,
        RefundState::Processing,
        RefundState::Succeeded,
        RefundState::Refused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RefundState::Requested => "requested",
            RefundState::Processing => "processing",
            RefundState::Succeeded => "succeeded",
            RefundState::Refused => "refused",
        }
    }

    /// Sent or to be sent, not yet confirmed either way.
    pub fn under_way(self) -> bool {
        matches!(self, RefundState::Requested | RefundState::Processing)
    }
}

impl TryFrom<String> for RefundState {
    type Error = crate::domain::lifecycle::UnknownStatus;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        RefundState::ALL
            .into_iter()
            .find(|s| s.as_str() == value)
            .ok_or(crate::domain::lifecycle::UnknownStatus(value))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Payment {
    pub id: i64,
    pub order_id: i64,
    pub amount_cents: i64,
    pub method: String,
    #[sqlx(try_from = "String")]
    pub status: PaymentStatus,
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Millis,
    /// Who takes the money.
    #[sqlx(try_from = "String")]
    pub provider: PaymentProvider,
    /// The provider's reference of this payment: WeChat Pay and Alipay `out_trade_no`, the
    /// Stripe PaymentIntent id (`manual`: the event id of the success).
    pub provider_ref: Option<String>,
    /// The provider's own id of the money taken: WeChat `transaction_id`, Alipay `trade_no`,
    /// the Stripe charge.
    pub provider_txn_id: Option<String>,
    /// What the provider last said of it (its own words, such as `NOTPAY` or `TRADE_SUCCESS`).
    pub provider_state: Option<String>,
    /// A transaction exists at the provider that is not known to be final: the sweep asks
    /// the provider before it cancels the order.
    #[sqlx(try_from = "crate::db::DbFlag")]
    pub provider_open: bool,
    /// When ordo last asked the provider about it.
    #[serde(with = "serde_rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub provider_checked_at: Option<Millis>,
    /// The last failure talking to the provider about it (open, query, close).
    pub provider_error: Option<String>,
    #[sqlx(try_from = "crate::db::DbFlag")]
    pub refund_required: bool,
    /// A refund through the provider: requested, processing, succeeded or refused.
    #[schema(value_type = Option<RefundState>)]
    pub refund_state: Option<String>,
    /// The refund's reference at the provider (WeChat and Stripe refund id, Alipay
    /// out_request_no), or what staff gave when they settled a late payment by hand.
    pub refund_ref: Option<String>,
    /// Why the provider refused the refund, or why it could not be sent.
    pub refund_error: Option<String>,
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Millis,
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Millis,
    /// The reference ordo gave the provider (out_trade_no; for Stripe the Idempotency-Key).
    #[serde(skip)]
    pub merchant_ref: Option<String>,
    /// The refund's out_refund_no / out_request_no / Idempotency-Key.
    #[serde(skip)]
    pub out_refund_no: Option<String>,
    /// What the customer's front end needs to pay (JSON): only in the owner's
    /// `POST /orders/{id}/payments` answer.
    #[serde(skip)]
    pub provider_client: Option<String>,
    /// The WeChat payer (JSAPI).
    #[serde(skip)]
    pub payer_openid: Option<String>,
    #[serde(skip)]
    pub refund_attempts: i64,
}

impl Payment {
    /// Where its refund through the provider stands, if one was asked for.
    pub fn refund(&self) -> Option<RefundState> {
        self.refund_state
            .clone()
            .and_then(|s| RefundState::try_from(s).ok())
    }

    /// The number of its `attempt`th refund through its provider: WeChat Pay's
    /// out_refund_no, Alipay's out_request_no, Stripe's Idempotency-Key.
    pub fn refund_number(&self, attempt: i64) -> String {
        let base = self
            .merchant_ref
            .clone()
            .unwrap_or_else(|| format!("P{}", self.id));
        format!("{base}R{attempt}")
    }

    /// The refund number to send now, with its attempt: the one in hand (sending it again
    /// never refunds twice), or the next one after a refund the provider failed for good.
    pub fn next_refund_number(&self) -> (String, i64) {
        match &self.out_refund_no {
            Some(number) => (number.clone(), self.refund_attempts),
            None => {
                let attempt = self.refund_attempts + 1;
                (self.refund_number(attempt), attempt)
            }
        }
    }

    /// Open (pending) and not past its expiry at `now`.
    pub fn is_open_at(&self, now: Millis) -> bool {
        self.status == PaymentStatus::Pending && self.expires_at > now
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct HistoryEntry {
    pub from_status: Option<String>,
    pub to_status: String,
    pub actor: String,
    pub note: Option<String>,
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Millis,
}

/// A result the payment provider reports for one payment.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderEvent {
    pub event_id: String,
    pub payment_id: i64,
    pub status: ProviderStatus,
    pub amount_cents: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProviderStatus {
    Succeeded,
    Failed,
}
