-- users and chats: settings, locale, bans, per-user limit overrides
CREATE TABLE users (
    key            TEXT PRIMARY KEY,          -- "telegram:42"
    locale         TEXT,
    model          TEXT,
    size           TEXT,
    aspect         TEXT,
    banned         INTEGER NOT NULL DEFAULT 0,
    ban_notified   INTEGER NOT NULL DEFAULT 0,
    daily_limit    INTEGER,                   -- NULL: the [quota] default
    monthly_limit  INTEGER,
    created_at     TEXT NOT NULL
);

CREATE TABLE chats (
    key            TEXT PRIMARY KEY,          -- "telegram:-100123"
    locale         TEXT,
    banned         INTEGER NOT NULL DEFAULT 0,
    daily_limit    INTEGER,                   -- NULL: [quota] chat_daily_credits
    created_at     TEXT NOT NULL
);

-- append-only credit ledger; balances are sums over it
CREATE TABLE ledger (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    ts             TEXT NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('reserve', 'settle', 'refund', 'grant')),
    reservation_id TEXT,
    actor_key      TEXT NOT NULL,
    chat_key       TEXT,
    day            TEXT NOT NULL,              -- local calendar day of the reservation (quota tz)
    month          TEXT NOT NULL,
    credits        INTEGER NOT NULL DEFAULT 0, -- allowance credits: +held, -refunded
    bonus          INTEGER NOT NULL DEFAULT 0, -- bonus credits: +granted, -spent, +refunded
    usd            REAL NOT NULL DEFAULT 0,    -- spend toward the global cap: +held, -refunded
    model          TEXT,
    size           TEXT,
    note           TEXT
);
CREATE INDEX ledger_actor_day ON ledger (actor_key, day);
CREATE INDEX ledger_actor_month ON ledger (actor_key, month);
CREATE INDEX ledger_chat_day ON ledger (chat_key, day);
CREATE INDEX ledger_day ON ledger (day);
CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
BEGIN SELECT RAISE(ABORT, 'ledger is append-only'); END;
CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
BEGIN SELECT RAISE(ABORT, 'ledger is append-only'); END;

-- the state of each reservation (held -> settled | refunded, exactly once)
CREATE TABLE reservations (
    id             TEXT PRIMARY KEY,
    actor_key      TEXT NOT NULL,
    chat_key       TEXT,
    credits        INTEGER NOT NULL,
    bonus          INTEGER NOT NULL,
    usd            REAL NOT NULL,
    day            TEXT NOT NULL,
    month          TEXT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('held', 'settled', 'refunded')),
    created_at     TEXT NOT NULL,
    closed_at      TEXT
);
CREATE INDEX reservations_held ON reservations (state) WHERE state = 'held';

-- conversation turns form a tree through parent_id
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
    input_hashes   TEXT NOT NULL,             -- JSON list of blob hashes
    output_hashes  TEXT NOT NULL,
    provider_state TEXT,
    credits        INTEGER NOT NULL DEFAULT 0,
    created_at     TEXT NOT NULL
);
CREATE INDEX turns_actor ON turns (actor_key);

-- every platform message that shows a turn's output
CREATE TABLE bindings (
    platform       TEXT NOT NULL,
    chat_id        TEXT NOT NULL,
    message_id     TEXT NOT NULL,
    turn_id        TEXT NOT NULL REFERENCES turns (id) ON DELETE CASCADE,
    PRIMARY KEY (platform, chat_id, message_id)
);
CREATE INDEX bindings_turn ON bindings (turn_id);

-- content-addressed image blobs on disk (data_dir/blobs/ab/abcdef...)
CREATE TABLE blobs (
    hash           TEXT PRIMARY KEY,
    mime           TEXT NOT NULL,
    size           INTEGER NOT NULL,
    width          INTEGER NOT NULL DEFAULT 0,
    height         INTEGER NOT NULL DEFAULT 0,
    created_at     TEXT NOT NULL,
    last_used_at   TEXT NOT NULL
);
CREATE INDEX blobs_last_used ON blobs (last_used_at);
