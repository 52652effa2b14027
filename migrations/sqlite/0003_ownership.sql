-- Cluster ownership fencing.
--
-- Each time a node takes ownership of an entity it bumps the entity's
-- epoch here and keeps the new value. Its counter flushes carry that epoch
-- and are written only while it is still current, so a node that wrongly
-- believes it still owns an entity (a partition, a stale view) cannot add
-- to state that a newer owner has taken over. A single node never claims
-- (its flushes carry no epoch) and never reads this table.
CREATE TABLE entity_owners (
    entity     TEXT   PRIMARY KEY,
    owner      TEXT   NOT NULL,
    epoch      BIGINT NOT NULL,
    claimed_at INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER))
);
