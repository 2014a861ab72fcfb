//! The order lifecycle: statuses, the transition table kept exactly as the Django original's
//! `OrderStateMachine.TRANSITIONS`, and who may make each move. Pure code, no I/O; the
//! database layer enforces it with a compare-and-set on the current status.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Pending,
    Paid,
    Shipped,
    Completed,
    Cancelled,
    Refunding,
    Refunded,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 7] = [
        OrderStatus::Pending,
        OrderStatus::Paid,
        OrderStatus::Shipped,
        OrderStatus::Completed,
        OrderStatus::Cancelled,
        OrderStatus::Refunding,
        OrderStatus::Refunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Paid => "paid",
            OrderStatus::Shipped => "shipped",
            OrderStatus::Completed => "completed",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Refunding => "refunding",
            OrderStatus::Refunded => "refunded",
        }
    }

    /// The Django original's transition table: where an order in this status may go next.
    pub fn allowed_moves(self) -> &'static [OrderStatus] {
        use OrderStatus::*;
        match self {
            Pending => &[Paid, Cancelled],
            Paid => &[Shipped, Refunding, Cancelled],
            Shipped => &[Completed, Refunding],
            Completed => &[Refunding],
            Refunding => &[Refunded, Paid],
            Cancelled | Refunded => &[],
        }
    }

    pub fn can_move_to(self, to: OrderStatus) -> bool {
        self.allowed_moves().contains(&to)
    }

    pub fn is_terminal(self) -> bool {
        self.allowed_moves().is_empty()
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown order status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for OrderStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OrderStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

impl TryFrom<String> for OrderStatus {
    type Error = UnknownStatus;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

/// Who is asking for a move, as far as the lifecycle cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The customer who placed the order.
    Owner,
    Staff,
    /// The unpaid-order sweep.
    Expiry,
    /// A succeeded payment reported by the provider.
    Payment,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Owner, Role::Staff, Role::Expiry, Role::Payment];
}

/// Why a move is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The table does not allow `from -> to` at all.
    NotAllowed { allowed: &'static [OrderStatus] },
    /// The table allows it, but not for this role.
    NotPermitted,
}

/// Decides whether `role` may move an order from `from` to `to`.
pub fn check_move(from: OrderStatus, to: OrderStatus, role: Role) -> Result<(), Refusal> {
    use OrderStatus::*;
    if !from.can_move_to(to) {
        return Err(Refusal::NotAllowed {
            allowed: from.allowed_moves(),
        });
    }
    let permitted = match (from, to) {
        (Pending, Paid) => role == Role::Payment,
        (Pending, Cancelled) => matches!(role, Role::Owner | Role::Staff | Role::Expiry),
        (Paid, Shipped) | (Paid, Cancelled) => role == Role::Staff,
        (Paid, Refunding) | (Shipped, Refunding) | (Completed, Refunding) => {
            matches!(role, Role::Owner | Role::Staff)
        }
        (Shipped, Completed) => matches!(role, Role::Owner | Role::Staff),
        (Refunding, Refunded) | (Refunding, Paid) => role == Role::Staff,
        _ => false,
    };
    if permitted {
        Ok(())
    } else {
        Err(Refusal::NotPermitted)
    }
}

/// Whether `role` may make some move to `to` from any status: a caller whose role never
/// may is refused before anything about the order is looked at.
pub fn may_ever(role: Role, to: OrderStatus) -> bool {
    OrderStatus::ALL
        .into_iter()
        .any(|from| check_move(from, to, role).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use OrderStatus::*;
    use proptest::prelude::*;

    #[test]
    fn table_matches_the_seed() {
        let table: Vec<(OrderStatus, Vec<OrderStatus>)> = OrderStatus::ALL
            .into_iter()
            .map(|s| (s, s.allowed_moves().to_vec()))
            .collect();
        assert_eq!(
            table,
            vec![
                (Pending, vec![Paid, Cancelled]),
                (Paid, vec![Shipped, Refunding, Cancelled]),
                (Shipped, vec![Completed, Refunding]),
                (Completed, vec![Refunding]),
                (Cancelled, vec![]),
                (Refunding, vec![Refunded, Paid]),
                (Refunded, vec![]),
            ]
        );
    }

    #[test]
    fn terminal_statuses() {
        let terminal: Vec<_> = OrderStatus::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect();
        assert_eq!(terminal, vec![Cancelled, Refunded]);
    }

    #[test]
    fn names_round_trip() {
        for s in OrderStatus::ALL {
            assert_eq!(s.as_str().parse::<OrderStatus>(), Ok(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        assert!("PAID".parse::<OrderStatus>().is_err());
        assert!("".parse::<OrderStatus>().is_err());
    }

    #[test]
    fn only_a_payment_pays_a_pending_order() {
        assert_eq!(check_move(Pending, Paid, Role::Payment), Ok(()));
        for role in [Role::Owner, Role::Staff, Role::Expiry] {
            assert_eq!(check_move(Pending, Paid, role), Err(Refusal::NotPermitted));
        }
    }

    #[test]
    fn the_sweep_only_cancels_pending_orders() {
        for from in OrderStatus::ALL {
            for to in OrderStatus::ALL {
                let ok = check_move(from, to, Role::Expiry).is_ok();
                assert_eq!(ok, (from, to) == (Pending, Cancelled), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn owners_cannot_ship_approve_or_cancel_paid_orders() {
        assert_eq!(
            check_move(Paid, Shipped, Role::Owner),
            Err(Refusal::NotPermitted)
        );
        assert_eq!(
            check_move(Paid, Cancelled, Role::Owner),
            Err(Refusal::NotPermitted)
        );
        assert_eq!(
            check_move(Refunding, Refunded, Role::Owner),
            Err(Refusal::NotPermitted)
        );
        assert_eq!(
            check_move(Refunding, Paid, Role::Owner),
            Err(Refusal::NotPermitted)
        );
        assert_eq!(check_move(Pending, Cancelled, Role::Owner), Ok(()));
        assert_eq!(check_move(Shipped, Completed, Role::Owner), Ok(()));
        assert_eq!(check_move(Completed, Refunding, Role::Owner), Ok(()));
    }

    #[test]
    fn refusal_names_the_allowed_moves() {
        assert_eq!(
            check_move(Shipped, Cancelled, Role::Staff),
            Err(Refusal::NotAllowed {
                allowed: &[Completed, Refunding]
            })
        );
        assert_eq!(
            check_move(Cancelled, Paid, Role::Payment),
            Err(Refusal::NotAllowed { allowed: &[] })
        );
    }

    #[test]
    fn what_each_role_may_ever_do() {
        let may = |role| {
            OrderStatus::ALL
                .into_iter()
                .filter(|to| may_ever(role, *to))
                .collect::<Vec<_>>()
        };
        assert_eq!(may(Role::Owner), vec![Completed, Cancelled, Refunding]);
        assert_eq!(
            may(Role::Staff),
            vec![Paid, Shipped, Completed, Cancelled, Refunding, Refunded]
        );
        assert_eq!(may(Role::Expiry), vec![Cancelled]);
        assert_eq!(may(Role::Payment), vec![Paid]);
    }

    fn status() -> impl Strategy<Value = OrderStatus> {
        prop::sample::select(OrderStatus::ALL.to_vec())
    }

    fn role() -> impl Strategy<Value = Role> {
        prop::sample::select(Role::ALL.to_vec())
    }

    /// The table written out as pairs, independently of `allowed_moves`.
    const SEED_PAIRS: [(OrderStatus, OrderStatus); 10] = [
        (Pending, Paid),
        (Pending, Cancelled),
        (Paid, Shipped),
        (Paid, Refunding),
        (Paid, Cancelled),
        (Shipped, Completed),
        (Shipped, Refunding),
        (Completed, Refunding),
        (Refunding, Refunded),
        (Refunding, Paid),
    ];

    proptest! {
        #[test]
        fn every_pair_is_decided_by_the_seed_table(from in status(), to in status(), role in role()) {
            let in_table = SEED_PAIRS.contains(&(from, to));
            prop_assert_eq!(from.can_move_to(to), in_table);
            match check_move(from, to, role) {
                Ok(()) => prop_assert!(in_table),
                Err(Refusal::NotAllowed { allowed }) => {
                    prop_assert!(!in_table);
                    prop_assert_eq!(allowed, from.allowed_moves());
                    prop_assert!(!allowed.contains(&to));
                }
                Err(Refusal::NotPermitted) => prop_assert!(in_table),
            }
        }

        #[test]
        fn every_allowed_pair_has_someone_who_may_make_it(from in status(), to in status()) {
            let someone = Role::ALL.into_iter().any(|r| check_move(from, to, r).is_ok());
            prop_assert_eq!(someone, from.can_move_to(to));
        }

        #[test]
        fn no_move_stays_in_place(s in status(), role in role()) {
            prop_assert!(check_move(s, s, role).is_err());
        }
    }
}
