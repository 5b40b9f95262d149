-- Jobs waiting for a slot that another process may finish if this one dies (bot/handoff.py).
-- A row lives from the job's admission until it starts (or leaves the queue); its owner is the
-- instance that will run it. When that owner's lease lapses, a process running the same
-- platform claims the row (a conditional update decides between two) and runs the job again
-- from its request: the dead owner's reservation is refunded by the instance sweep as usual.
CREATE TABLE handoffs (
    id             TEXT PRIMARY KEY,
    owner          TEXT NOT NULL,             -- the instance that runs it when its turn comes
    platform       TEXT NOT NULL,
    target         TEXT NOT NULL,             -- where the result goes, as the adapter spells it (JSON)
    call           TEXT NOT NULL,             -- what was asked (JSON; references by image digest)
    created_at     TEXT NOT NULL
);
CREATE INDEX handoffs_platform ON handoffs (platform, created_at);
