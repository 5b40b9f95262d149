-- Results waiting for a platform that refuses them for now (a 429), kept across restarts
-- (bot/outbox.py). One row per turn of the result (a batch has several), all of one delivery
-- sharing its target and reply; the held reservation of each turn stays held meanwhile, and the
-- instance sweep leaves it alone: the outbox itself refunds what it gives up on.
CREATE TABLE outbox (
    turn_id        TEXT PRIMARY KEY,
    delivery       TEXT NOT NULL,             -- the result's first turn: what is sent together
    platform       TEXT NOT NULL,
    target         TEXT NOT NULL,             -- where, as the adapter spells it (JSON)
    reply          TEXT NOT NULL,             -- what, without the images (JSON)
    created_at     TEXT NOT NULL
);
CREATE INDEX outbox_platform ON outbox (platform, created_at);
