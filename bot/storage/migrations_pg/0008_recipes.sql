-- PostgreSQL twin of migrations/0008_recipes.sql: turns.recipe (--style and --no as JSON),
-- users.n and users.style (/settings defaults), and /describe's suggestions
ALTER TABLE turns ADD COLUMN recipe TEXT;
ALTER TABLE users ADD COLUMN n INTEGER;
ALTER TABLE users ADD COLUMN style TEXT;
CREATE TABLE suggestions (
    id             TEXT PRIMARY KEY,
    actor_key      TEXT NOT NULL,
    prompts        TEXT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX suggestions_actor ON suggestions (actor_key);
