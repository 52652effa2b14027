-- Identity and tenancy: organisations, their members, API keys, and the
-- indexes the usage summary reads by.
--
-- Same conventions as 0001: timestamps are TIMESTAMPTZ, ids are TEXT.

-- `subscription_tier` is what an `org:<id>` entity is limited by, just as
-- `users.subscription_tier` is for `user:<id>`. `owner_user_id` is the user
-- who created the organisation (its billing owner); membership roles live in
-- `org_members`.
CREATE TABLE organizations (
    id                TEXT        PRIMARY KEY,
    name              TEXT        NOT NULL,
    billing_email     TEXT        NULL,
    subscription_tier TEXT        NOT NULL DEFAULT 'free' REFERENCES subscription_tiers (name),
    owner_user_id     TEXT        NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Keyed by user alone: a user belongs to at most one organisation (a check
-- charges exactly one `org:` entity). `users.organization_id` mirrors this
-- table and is kept in step by the store in the same transaction.
CREATE TABLE org_members (
    user_id    TEXT        PRIMARY KEY,
    org_id     TEXT        NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    role       TEXT        NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX org_members_org_id ON org_members (org_id);

-- API keys. `scopes` is a comma-separated list, validated before it gets
-- here. A key is scoped to an organisation and/or a user, or to neither (a
-- service key). The secrets themselves are never stored: see below.
CREATE TABLE api_keys (
    id           TEXT        PRIMARY KEY,
    name         TEXT        NOT NULL,
    scopes       TEXT        NOT NULL,
    org_id       TEXT        NULL,
    user_id      TEXT        NULL,
    created_by   TEXT        NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    revoked_at   TIMESTAMPTZ NULL,
    last_used_at TIMESTAMPTZ NULL
);

-- The SHA-256 (lowercase hex) of each secret that opens a key. A key has
-- more than one while a rotation's grace period runs: the old secret keeps
-- working until its `expires_at` (NULL = no expiry).
CREATE TABLE api_key_secrets (
    secret_hash TEXT        PRIMARY KEY,
    key_id      TEXT        NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ NULL
);

CREATE INDEX api_key_secrets_key_id ON api_key_secrets (key_id);

-- The usage summary filters by organisation or user and a time range that
-- need not align with calendar months (0001 indexes by `period` only), or
-- by time range alone for an operator's view of everything.
CREATE INDEX model_usage_org_created ON model_usage (organization_id, created_at);
CREATE INDEX model_usage_user_created ON model_usage (user_id, created_at);
CREATE INDEX model_usage_created ON model_usage (created_at);
