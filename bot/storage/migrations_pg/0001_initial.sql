-- PostgreSQL twin of migrations/0001_initial.sql (same number, same change; see postgres_schema.py)
CREATE TABLE users (
    key            TEXT PRIMARY KEY,
    locale         TEXT,
    model          TEXT,
    size           TEXT,
    aspect         TEXT,
    banned         BOOLEAN NOT NULL DEFAULT FALSE,
    ban_notified   BOOLEAN NOT NULL DEFAULT FALSE,
    daily_limit    INTEGER,
    monthly_limit  INTEGER,
    created_at     TIMESTAMPTZ NOT NULL
);

CREATE TABLE chats (
    key            TEXT PRIMARY KEY,
    locale         TEXT,
    banned         BOOLEAN NOT NULL DEFAULT FALSE,
    daily_limit    INTEGER,
    created_at     TIMESTAMPTZ NOT NULL
);

-- append-only credit ledger
CREATE TABLE ledger (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ts             TIMESTAMPTZ NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('reserve', 'settle', 'refund', 'grant')),
    reservation_id TEXT,
    actor_key      TEXT NOT NULL,
    chat_key       TEXT,
    day            TEXT NOT NULL,
    month          TEXT NOT NULL,
    credits        INTEGER NOT NULL DEFAULT 0,
    bonus          INTEGER NOT NULL DEFAULT 0,
    usd            DOUBLE PRECISION NOT NULL DEFAULT 0,
    model          TEXT,
    size           TEXT,
    note           TEXT
);
CREATE INDEX ledger_actor_day ON ledger (actor_key, day);
CREATE INDEX ledger_actor_month ON ledger (actor_key, month);
CREATE INDEX ledger_chat_day ON ledger (chat_key, day);
CREATE INDEX ledger_day ON ledger (day);
CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger is append-only';
END $$;
CREATE TRIGGER ledger_no_change BEFORE UPDATE OR DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_no_truncate BEFORE TRUNCATE ON ledger
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();

CREATE TABLE reservations (
    id             TEXT PRIMARY KEY,
    actor_key      TEXT NOT NULL,
    chat_key       TEXT,
    credits        INTEGER NOT NULL,
    bonus          INTEGER NOT NULL,
    usd            DOUBLE PRECISION NOT NULL,
    day            TEXT NOT NULL,
    month          TEXT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('held', 'settled', 'refunded')),
    created_at     TIMESTAMPTZ NOT NULL,
    closed_at      TIMESTAMPTZ
);
CREATE INDEX reservations_held ON reservations (state) WHERE state = 'held';

CREATE TABLE turns (
    id             TEXT PRIMARY KEY,
    actor_key      TEXT NOT NULL,
    chat_key       TEXT NOT NULL,
    parent_id      TEXT REFERENCES turns (id) ON DELETE SET NULL,
    kind           TEXT NOT NULL,
    prompt         TEXT NOT NULL,
    model          TEXT NOT NULL,
    size           TEXT,
    aspect         TEXT,
    input_hashes   TEXT NOT NULL,
    output_hashes  TEXT NOT NULL,
    provider_state TEXT,
    credits        INTEGER NOT NULL DEFAULT 0,
    created_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX turns_actor ON turns (actor_key);
CREATE INDEX turns_parent ON turns (parent_id);

CREATE TABLE bindings (
    platform       TEXT NOT NULL,
    chat_id        TEXT NOT NULL,
    message_id     TEXT NOT NULL,
    turn_id        TEXT NOT NULL REFERENCES turns (id) ON DELETE CASCADE,
    PRIMARY KEY (platform, chat_id, message_id)
);
CREATE INDEX bindings_turn ON bindings (turn_id);

CREATE TABLE blobs (
    hash           TEXT PRIMARY KEY,
    mime           TEXT NOT NULL,
    size           BIGINT NOT NULL,
    width          INTEGER NOT NULL DEFAULT 0,
    height         INTEGER NOT NULL DEFAULT 0,
    created_at     TIMESTAMPTZ NOT NULL,
    last_used_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX blobs_last_used ON blobs (last_used_at);
