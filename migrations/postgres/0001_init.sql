-- Tollgate schema, Postgres flavour.
--
-- Money is NUMERIC (exact; read and bound as rust_decimal::Decimal).
-- Timestamps are TIMESTAMPTZ. Request-window starts are BIGINT Unix
-- milliseconds, as the actors count them.

CREATE TABLE subscription_tiers (
    name              TEXT        PRIMARY KEY,
    daily_limit       BIGINT      NOT NULL CHECK (daily_limit >= 0),
    monthly_limit     BIGINT      NULL CHECK (monthly_limit IS NULL OR monthly_limit >= 0),
    rpm               INTEGER     NULL CHECK (rpm IS NULL OR rpm > 0),
    price_monthly_usd NUMERIC     NOT NULL CHECK (price_monthly_usd >= 0),
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);

INSERT INTO subscription_tiers (name, daily_limit, monthly_limit, rpm, price_monthly_usd) VALUES
    ('free',       10,   100,    NULL, 0),
    ('pro',        100,  3000,   NULL, 9.99),
    ('enterprise', 1000, 100000, NULL, 99.99),
    ('guest',      10,   NULL,   NULL, 0);

CREATE TABLE users (
    id                TEXT        PRIMARY KEY,
    subscription_tier TEXT        NOT NULL DEFAULT 'free' REFERENCES subscription_tiers (name),
    organization_id   TEXT        NULL,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX users_organization_id ON users (organization_id);

-- Keyed by the entity key text: 'user:<id>', 'org:<id>', ...
CREATE TABLE budget_limits (
    entity             TEXT        PRIMARY KEY,
    monthly_budget_usd NUMERIC     NOT NULL CHECK (monthly_budget_usd >= 0),
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE model_prices (
    model               TEXT        PRIMARY KEY,
    input_per_mtok_usd  NUMERIC     NOT NULL CHECK (input_per_mtok_usd >= 0),
    output_per_mtok_usd NUMERIC     NOT NULL CHECK (output_per_mtok_usd >= 0),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The usage ledger. `user_id`, `organization_id`, `guest_ip` and
-- `guest_fingerprint` hold the ids of the charged entity keys (IPs
-- normalised as in the key), so a ledger sum matches the spend row.
-- `created_at` is the event's own time, which decides `period`.
CREATE TABLE model_usage (
    id                BIGSERIAL   PRIMARY KEY,
    event_id          UUID        NOT NULL UNIQUE,
    reservation_id    UUID        NULL,
    user_id           TEXT        NULL,
    organization_id   TEXT        NULL,
    guest_ip          TEXT        NULL,
    guest_fingerprint TEXT        NULL,
    model             TEXT        NOT NULL,
    input_tokens      BIGINT      NOT NULL CHECK (input_tokens >= 0),
    output_tokens     BIGINT      NOT NULL CHECK (output_tokens >= 0),
    cost_usd          NUMERIC     NOT NULL CHECK (cost_usd >= 0),
    period            TEXT        NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX model_usage_user_period ON model_usage (user_id, period);
CREATE INDEX model_usage_org_period ON model_usage (organization_id, period);
CREATE INDEX model_usage_ip_period ON model_usage (guest_ip, period);
CREATE INDEX model_usage_fp_period ON model_usage (guest_fingerprint, period);

-- Spend per entity and calendar month ('YYYY-MM'); always equal to the sum
-- of the entity's ledger rows for that period.
CREATE TABLE entity_spend (
    entity     TEXT        NOT NULL,
    period     TEXT        NOT NULL,
    spent_usd  NUMERIC     NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (entity, period)
);

-- Request counters, flushed as deltas. `window_kind` is 'day' or 'month';
-- `window_start` is the window's first millisecond (Unix ms).
CREATE TABLE entity_counters (
    entity       TEXT   NOT NULL,
    window_kind  TEXT   NOT NULL CHECK (window_kind IN ('day', 'month')),
    window_start BIGINT NOT NULL,
    count        BIGINT NOT NULL,
    PRIMARY KEY (entity, window_kind, window_start)
);

-- Budget alerts; the key makes each threshold fire once per entity and period.
CREATE TABLE usage_alerts (
    entity     TEXT        NOT NULL,
    period     TEXT        NOT NULL,
    threshold  INTEGER     NOT NULL,
    level      TEXT        NOT NULL,
    spent_usd  NUMERIC     NOT NULL,
    limit_usd  NUMERIC     NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (entity, period, threshold)
);

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
