-- Tollgate schema, SQLite flavour.
--
-- Money columns are TEXT holding the exact decimal string (e.g. '0.012207'):
-- SQLite has no exact decimal type and its arithmetic on numeric text goes
-- through floats, so the store never does arithmetic on money in SQL. It
-- reads, adds in Rust with rust_decimal, and writes back inside one
-- transaction. Declaring these columns TEXT (not NUMERIC) also stops SQLite's
-- type affinity from converting '12.207' into a float on insert.
--
-- Timestamps are INTEGER Unix milliseconds (UTC). UUIDs are TEXT in the
-- hyphenated lower-case form.

CREATE TABLE subscription_tiers (
    name              TEXT    PRIMARY KEY NOT NULL,
    daily_limit       INTEGER NOT NULL CHECK (daily_limit >= 0),
    monthly_limit     INTEGER NULL CHECK (monthly_limit IS NULL OR monthly_limit >= 0),
    rpm               INTEGER NULL CHECK (rpm IS NULL OR rpm > 0),
    price_monthly_usd TEXT    NOT NULL,
    created_at        INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
    updated_at        INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER))
);

INSERT INTO subscription_tiers (name, daily_limit, monthly_limit, rpm, price_monthly_usd) VALUES
    ('free',       10,   100,    NULL, '0'),
    ('pro',        100,  3000,   NULL, '9.99'),
    ('enterprise', 1000, 100000, NULL, '99.99'),
    ('guest',      10,   NULL,   NULL, '0');

CREATE TABLE users (
    id                TEXT    PRIMARY KEY NOT NULL,
    subscription_tier TEXT    NOT NULL DEFAULT 'free' REFERENCES subscription_tiers (name),
    organization_id   TEXT    NULL,
    created_at        INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
    updated_at        INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER))
);

CREATE INDEX users_organization_id ON users (organization_id);

-- Keyed by the entity key text: 'user:<id>', 'org:<id>', ...
CREATE TABLE budget_limits (
    entity             TEXT    PRIMARY KEY NOT NULL,
    monthly_budget_usd TEXT    NOT NULL,
    created_at         INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
    updated_at         INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER))
);

CREATE TABLE model_prices (
    model               TEXT    PRIMARY KEY NOT NULL,
    input_per_mtok_usd  TEXT    NOT NULL,
    output_per_mtok_usd TEXT    NOT NULL,
    updated_at          INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER))
);

-- The usage ledger. `user_id`, `organization_id`, `guest_ip` and
-- `guest_fingerprint` hold the ids of the charged entity keys (IPs
-- normalised as in the key), so a ledger sum matches the spend row.
-- `created_at` is the event's own time (Unix ms), which decides `period`.
CREATE TABLE model_usage (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id          TEXT    NOT NULL UNIQUE,
    reservation_id    TEXT    NULL,
    user_id           TEXT    NULL,
    organization_id   TEXT    NULL,
    guest_ip          TEXT    NULL,
    guest_fingerprint TEXT    NULL,
    model             TEXT    NOT NULL,
    input_tokens      INTEGER NOT NULL CHECK (input_tokens >= 0),
    output_tokens     INTEGER NOT NULL CHECK (output_tokens >= 0),
    cost_usd          TEXT    NOT NULL,
    period            TEXT    NOT NULL,
    created_at        INTEGER NOT NULL
);

CREATE INDEX model_usage_user_period ON model_usage (user_id, period);
CREATE INDEX model_usage_org_period ON model_usage (organization_id, period);
CREATE INDEX model_usage_ip_period ON model_usage (guest_ip, period);
CREATE INDEX model_usage_fp_period ON model_usage (guest_fingerprint, period);

-- Spend per entity and calendar month ('YYYY-MM'); always equal to the sum
-- of the entity's ledger rows for that period.
CREATE TABLE entity_spend (
    entity     TEXT    NOT NULL,
    period     TEXT    NOT NULL,
    spent_usd  TEXT    NOT NULL,
    updated_at INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
    PRIMARY KEY (entity, period)
);

-- Request counters, flushed as deltas. `window_kind` is 'day' or 'month';
-- `window_start` is the window's first millisecond (Unix ms).
CREATE TABLE entity_counters (
    entity       TEXT    NOT NULL,
    window_kind  TEXT    NOT NULL CHECK (window_kind IN ('day', 'month')),
    window_start INTEGER NOT NULL,
    count        INTEGER NOT NULL,
    PRIMARY KEY (entity, window_kind, window_start)
) WITHOUT ROWID; -- one B-tree, not table + key index: the flusher upserts thousands of rows per interval

-- Budget alerts; the key makes each threshold fire once per entity and period.
CREATE TABLE usage_alerts (
    entity     TEXT    NOT NULL,
    period     TEXT    NOT NULL,
    threshold  INTEGER NOT NULL,
    level      TEXT    NOT NULL,
    spent_usd  TEXT    NOT NULL,
    limit_usd  TEXT    NOT NULL,
    created_at INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
    PRIMARY KEY (entity, period, threshold)
);

CREATE TABLE settings (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
