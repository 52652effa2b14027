-- Alerts that reach people (issue 9): channels, alert ids and kinds,
-- per-budget thresholds, and the delivery outbox.

-- Where alerts go. A channel without `org_id` receives every alert (a
-- platform admin's); one with `org_id` receives that organisation's alerts
-- and its members'. Deleting keeps the row (deliveries refer to it).
CREATE TABLE alert_channels (
    id         TEXT        PRIMARY KEY,
    kind       TEXT        NOT NULL CHECK (kind IN ('webhook', 'slack', 'email')),
    target     TEXT        NOT NULL,
    org_id     TEXT        NULL,
    -- The webhook signing secret (`whsec_…`). It is kept in clear because
    -- the dispatcher must sign every delivery with it; it is shown to the
    -- caller once, at creation, and never again by the API.
    secret     TEXT        NULL,
    created_by TEXT        NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    deleted_at TIMESTAMPTZ NULL
);

CREATE INDEX alert_channels_org_id ON alert_channels (org_id) WHERE deleted_at IS NULL;

-- Every alert gets an id (the payload's `id`) and a kind. Once-only is now
-- per (entity, period, kind, threshold): the 100 % threshold and the
-- overage are two alerts.
ALTER TABLE usage_alerts ADD COLUMN id UUID NULL;
UPDATE usage_alerts SET id = gen_random_uuid() WHERE id IS NULL;
ALTER TABLE usage_alerts ALTER COLUMN id SET NOT NULL;
ALTER TABLE usage_alerts ADD CONSTRAINT usage_alerts_id_key UNIQUE (id);
ALTER TABLE usage_alerts ADD COLUMN kind TEXT NOT NULL DEFAULT 'threshold'
    CHECK (kind IN ('threshold', 'overage'));
ALTER TABLE usage_alerts DROP CONSTRAINT usage_alerts_pkey;
ALTER TABLE usage_alerts ADD PRIMARY KEY (entity, period, kind, threshold);
CREATE INDEX usage_alerts_created_at ON usage_alerts (created_at);

-- A budget's own thresholds, comma-separated percentages; NULL: the
-- defaults (50,75,90,100).
ALTER TABLE budget_limits ADD COLUMN alert_thresholds TEXT NULL;

-- The outbox: one row per (alert, channel), written in the ledger's
-- transaction. `id` is the `webhook-id`, the same on every retry.
-- A node claims due rows by setting a lease (`lease_owner`,
-- `lease_until`); another node may take a row only once its lease ran out.
CREATE TABLE alert_deliveries (
    id              UUID        PRIMARY KEY,
    alert_id        UUID        NOT NULL REFERENCES usage_alerts (id),
    channel_id      TEXT        NOT NULL REFERENCES alert_channels (id),
    status          TEXT        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts        INTEGER     NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    lease_owner     TEXT        NULL,
    lease_until     TIMESTAMPTZ NULL,
    last_error      TEXT        NULL,
    delivered_at    TIMESTAMPTZ NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (alert_id, channel_id)
);

CREATE INDEX alert_deliveries_due ON alert_deliveries (status, next_attempt_at);
