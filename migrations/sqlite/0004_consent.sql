-- Membership by consent: invitations an organisation sends and its members
-- accept, and the per-member budget caps an organisation may set.
--
-- Same conventions as 0001: timestamps are INTEGER Unix milliseconds (UTC),
-- ids are TEXT, money is exact decimal TEXT.

-- An organisation's offer of membership. The user becomes a member only by
-- accepting it under their own credential; until then nothing of the
-- organisation applies to them. `answered_at` is set when the invitation is
-- accepted or declined, after which it cannot be used again. No foreign key
-- to `users`: a user may be invited before Tollgate has seen them.
CREATE TABLE org_invitations (
    id          TEXT    PRIMARY KEY NOT NULL,
    org_id      TEXT    NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id     TEXT    NOT NULL,
    role        TEXT    NOT NULL CHECK (role IN ('admin', 'member')),
    invited_by  TEXT    NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    answered_at INTEGER NULL
);

CREATE INDEX org_invitations_user_id ON org_invitations (user_id);
CREATE INDEX org_invitations_org_user ON org_invitations (org_id, user_id);

-- What an organisation caps a member's monthly spend at, apart from the
-- user's own budget in `budget_limits` (which only a platform admin sets).
-- A user entity's limit is the lower of the two. Keyed by user alone (a
-- user is in at most one organisation); deleted when the membership ends.
CREATE TABLE member_budget_caps (
    user_id            TEXT    PRIMARY KEY NOT NULL,
    org_id             TEXT    NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    monthly_budget_usd TEXT    NOT NULL,
    updated_at         INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER))
);

-- Keys an organisation bound to a member are revoked when the member leaves.
CREATE INDEX api_keys_org_user ON api_keys (org_id, user_id);
CREATE INDEX api_keys_user ON api_keys (user_id);
