//! Moving an order on request (the API, the console, the CLI, the demo): the steps at a
//! payment provider that some moves need first, then the transition. Cancelling an order
//! whose payment is open at a provider closes it there first (so nobody pays an order that
//! is gone); approving the refund of a provider payment refunds it through the provider.
//! Every other move is the transition alone.

use crate::Ordo;
use crate::db;
use crate::domain::{Actor, Order, OrderStatus};
use crate::error::{Error, Result};
use crate::orders::TransitionInput;

/// Closing a payment at a provider and cancelling can race a payment being opened: this
/// many rounds, then the conflict is the caller's.
const CANCEL_ROUNDS: usize = 3;

impl Ordo {
    /// Moves an order to `to` on behalf of `actor`: locked, checked against the lifecycle
    /// and the actor's role, applied with its effects, history row and event, in one
    /// transaction, after whatever the move needs at a payment provider.
    pub async fn transition(
        &self,
        actor: Actor,
        order_id: i64,
        to: OrderStatus,
        input: &TransitionInput,
    ) -> Result<Order> {
        if let Some(note) = &input.note {
            crate::domain::text::check_free("reason", note, 1000)?;
        }
        for (field, value) in [
            ("carrier", &input.carrier),
            ("tracking_number", &input.tracking_number),
        ] {
            if let Some(value) = value {
                crate::domain::text::check_line(field, value, 200)?;
            }
        }
        match to {
            OrderStatus::Cancelled => self.cancel_with_providers(actor, order_id, input).await,
            OrderStatus::Refunded => self.approve_refund(actor, order_id, input).await,
            _ => self.move_now(actor, order_id, to, input).await,
        }
    }

    pub async fn cancel_order(
        &self,
        actor: Actor,
        order_id: i64,
        reason: Option<String>,
    ) -> Result<Order> {
        let input = TransitionInput {
            note: reason,
            ..TransitionInput::default()
        };
        self.transition(actor, order_id, OrderStatus::Cancelled, &input)
            .await
    }

    async fn cancel_with_providers(
        &self,
        actor: Actor,
        order_id: i64,
        input: &TransitionInput,
    ) -> Result<Order> {
        // Who may ask comes before any call to a provider.
        self.authorize_move(actor, order_id, OrderStatus::Cancelled)
            .await?;
        let mut round = 0;
        loop {
            round += 1;
            self.close_payments_of(order_id).await?;
            match self
                .move_now(actor, order_id, OrderStatus::Cancelled, input)
                .await
            {
                Ok(order) => {
                    // A paid order's money goes back through its provider.
                    self.refund_soon_of_order(order_id).await;
                    return Ok(order);
                }
                Err(Error::Conflict(reason))
                    if round < CANCEL_ROUNDS && self.open_at_provider(order_id).await? =>
                {
                    tracing::debug!(
                        order_id,
                        reason,
                        "a payment was opened meanwhile; closing it"
                    );
                }
                done => return done,
            }
        }
    }

    async fn open_at_provider(&self, order_id: i64) -> Result<bool> {
        let mut conn = self.db.pool().acquire().await?;
        Ok(db::payments::for_order(&mut conn, order_id)
            .await?
            .iter()
            .any(|p| p.provider_open))
    }
}
