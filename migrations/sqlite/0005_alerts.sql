-- Alerts that reach people (issue 9): channels, alert ids and kinds,
-- per-budget thresholds, and the delivery outbox. Times are Unix ms.

-- Where alerts go. A channel without `org_id` receives every alert (a
-- platform admin's); one with `org_id` receives that organisation's alerts
-- and its members'. Deleting keeps the row (deliveries refer to it).
CREATE TABLE alert_channels (
    id         TEXT    PRIMARY KEY NOT NULL,
    kind       TEXT    NOT NULL CHECK (kind IN ('webhook', 'slack', 'email')),
    target     TEXT    NOT NULL,
    org_id     TEXT    NULL,
    -- The webhook signing secret (`whsec_…`). It is kept in clear because
    -- the dispatcher must sign every delivery with it; it is shown to the
    -- caller once, at creation, and never again by the API.
    secret     TEXT    NULL,
    created_by TEXT    NULL,
    created_at INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
    deleted_at INTEGER NULL
);

CREATE INDEX alert_channels_org_id ON alert_channels (org_id) WHERE deleted_at IS NULL;

-- Every alert gets an id (the payload's `id`) and a kind; once-only is now
-- per (entity, period, kind, threshold). SQLite cannot change a primary
-- key, so the table is rebuilt; existing rows get random (v4) ids.
CREATE TABLE usage_alerts_new (
    id         TEXT    NOT NULL UNIQUE,
    entity     TEXT    NOT NULL,
    period     TEXT    NOT NULL,
    kind       TEXT    NOT NULL DEFAULT 'threshold' CHECK (kind IN ('threshold', 'overage')),
    threshold  INTEGER NOT NULL,
    level      TEXT    NOT NULL,
    spent_usd  TEXT    NOT NULL,
    limit_usd  TEXT    NOT NULL,
    created_at INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
    PRIMARY KEY (entity, period, kind, threshold)
);

INSERT INTO usage_alerts_new (id, entity, period, kind, threshold, level, spent_usd, limit_usd, created_at)
SELECT lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-'
             || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2) || '-'
             || hex(randomblob(6))),
       entity, period, 'threshold', threshold, level, spent_usd, limit_usd, created_at
FROM usage_alerts;

DROP TABLE usage_alerts;
ALTER TABLE usage_alerts_new RENAME TO usage_alerts;
CREATE INDEX usage_alerts_created_at ON usage_alerts (created_at);

-- A budget's own thresholds, comma-separated percentages; NULL: the
-- defaults (50,75,90,100).
ALTER TABLE budget_limits ADD COLUMN alert_thresholds TEXT NULL;

-- The outbox: one row per (alert, channel), written in the ledger's
-- transaction. `id` is the `webhook-id`, the same on every retry. SQLite
-- is one node, but the lease columns work the same as on Postgres.
CREATE TABLE alert_deliveries (
    id              TEXT    PRIMARY KEY NOT NULL,
    alert_id        TEXT    NOT NULL REFERENCES usage_alerts (id),
    channel_id      TEXT    NOT NULL REFERENCES alert_channels (id),
    status          TEXT    NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
    lease_owner     TEXT    NULL,
    lease_until     INTEGER NULL,
    last_error      TEXT    NULL,
    delivered_at    INTEGER NULL,
    created_at      INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
    UNIQUE (alert_id, channel_id)
);

CREATE INDEX alert_deliveries_due ON alert_deliveries (status, next_attempt_at);
