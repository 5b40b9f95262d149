-- Issue 16: a result's recipe (its --style and --no, JSON) so a reroll, upscale or variation keeps
-- them; /settings defaults for --n and --style; /describe's suggested prompts, pressed later
ALTER TABLE turns ADD COLUMN recipe TEXT;
ALTER TABLE users ADD COLUMN n INTEGER;
ALTER TABLE users ADD COLUMN style TEXT;
CREATE TABLE suggestions (
    id             TEXT PRIMARY KEY,
    actor_key      TEXT NOT NULL,
    prompts        TEXT NOT NULL,             -- JSON list of the suggested prompts
    created_at     TEXT NOT NULL
);
CREATE INDEX suggestions_actor ON suggestions (actor_key);
