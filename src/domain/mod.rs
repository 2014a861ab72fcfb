//! Pure domain types: the lifecycle, who acts, and the records ordo keeps. No I/O here.

pub mod address;
pub mod lifecycle;
mod records;
pub mod text;
pub mod time;
pub mod whole;

pub use address::{NewShippingAddress, ShippingAddress};
pub use lifecycle::{OrderStatus, Role};
pub use records::*;
pub use time::{Millis, format_rfc3339, parse_rfc3339, parse_span};
