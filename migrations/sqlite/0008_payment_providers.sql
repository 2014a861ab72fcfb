-- Payment providers (WeChat Pay, Alipay, Stripe) beside the signed JSON webhook (`manual`).
--
-- A payment opened at a provider keeps what ordo needs to ask about it later: the
-- reference ordo gave the provider (`merchant_ref`: WeChat and Alipay's out_trade_no, the
-- Stripe Idempotency-Key), the provider's own ids, what the provider last said and when, and
-- whether a transaction exists there that is not known to be final (`provider_open`): the
-- sweep never cancels an order while one of its payments is open at a provider without
-- asking first.
ALTER TABLE payments ADD COLUMN provider TEXT NOT NULL DEFAULT 'manual'
    CONSTRAINT payments_provider_valid CHECK (provider IN ('manual', 'wechatpay', 'alipay', 'stripe'));
ALTER TABLE payments ADD COLUMN merchant_ref TEXT;
ALTER TABLE payments ADD COLUMN provider_txn_id TEXT;
ALTER TABLE payments ADD COLUMN provider_state TEXT;
ALTER TABLE payments ADD COLUMN provider_open INTEGER NOT NULL DEFAULT 0 CONSTRAINT payments_provider_open_flag CHECK (provider_open IN (0, 1));
-- What the customer's front end needs to pay (JSON), returned only to the order's owner.
ALTER TABLE payments ADD COLUMN provider_client TEXT;
ALTER TABLE payments ADD COLUMN provider_checked_at BIGINT;
ALTER TABLE payments ADD COLUMN provider_error TEXT;
ALTER TABLE payments ADD COLUMN payer_openid TEXT;
-- A refund through the provider: requested (to send), processing (sent, not confirmed),
-- succeeded, refused (the provider said no: shown, and can be tried again).
ALTER TABLE payments ADD COLUMN refund_state TEXT
    CONSTRAINT payments_refund_state_valid CHECK (refund_state IN ('requested', 'processing', 'succeeded', 'refused'));
ALTER TABLE payments ADD COLUMN out_refund_no TEXT;
ALTER TABLE payments ADD COLUMN refund_error TEXT;
ALTER TABLE payments ADD COLUMN refund_attempts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE payments ADD COLUMN refund_next_at BIGINT;

CREATE UNIQUE INDEX payments_merchant_ref ON payments (provider, merchant_ref) WHERE merchant_ref IS NOT NULL;
CREATE UNIQUE INDEX payments_out_refund_no ON payments (provider, out_refund_no) WHERE out_refund_no IS NOT NULL;
CREATE INDEX payments_provider_ref ON payments (provider, provider_ref) WHERE provider_ref IS NOT NULL;
-- The reconciliation job: payments open at a provider, oldest first.
CREATE INDEX payments_open_at_provider ON payments (created_at, id) WHERE provider_open;
-- The refund job: refunds to send or to confirm.
CREATE INDEX payments_refunds_under_way ON payments (refund_next_at, id)
    WHERE refund_state IN ('requested', 'processing');

-- Sweep runs count what the providers said.
ALTER TABLE sweep_runs ADD COLUMN queried BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sweep_runs ADD COLUMN found_paid BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sweep_runs ADD COLUMN closed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sweep_runs ADD COLUMN deferred BIGINT NOT NULL DEFAULT 0;

-- A customer's WeChat openid (for the mini-program the shop runs): pays through WeChat Pay
-- JSAPI when a payment is opened without one.
ALTER TABLE users ADD COLUMN wechat_openid TEXT;
