-- Credits people buy (issue 15). Purchased credits are a balance of their own (ledger.paid,
-- counter 'paid'), spent after the allowance and bonus credits; a reservation says how many it
-- holds. Payments are the money side, one row per charge id of the platform (Telegram's
-- telegram_payment_charge_id, Discord's entitlement id), so a repeated update credits once.
-- SQLite cannot change a CHECK constraint: the ledger is copied into a table with the new kinds.
CREATE TABLE ledger_new (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    ts             TEXT NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('reserve', 'settle', 'refund', 'grant',
                                                 'purchase', 'purchase_refund', 'expire')),
    reservation_id TEXT,
    actor_key      TEXT NOT NULL,
    chat_key       TEXT,
    day            TEXT NOT NULL,
    month          TEXT NOT NULL,
    credits        INTEGER NOT NULL DEFAULT 0,
    bonus          INTEGER NOT NULL DEFAULT 0,
    usd            REAL NOT NULL DEFAULT 0,
    model          TEXT,
    size           TEXT,
    note           TEXT,
    paid           INTEGER NOT NULL DEFAULT 0  -- purchased credits: +bought, -spent, +refunded
);
INSERT INTO ledger_new (id, ts, kind, reservation_id, actor_key, chat_key, day, month, credits,
                        bonus, usd, model, size, note)
SELECT id, ts, kind, reservation_id, actor_key, chat_key, day, month, credits, bonus, usd, model,
       size, note FROM ledger;
DROP TABLE ledger;
ALTER TABLE ledger_new RENAME TO ledger;
CREATE INDEX ledger_actor_day ON ledger (actor_key, day);
CREATE INDEX ledger_actor_month ON ledger (actor_key, month);
CREATE INDEX ledger_chat_day ON ledger (chat_key, day);
CREATE INDEX ledger_day ON ledger (day);
CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
BEGIN SELECT RAISE(ABORT, 'ledger is append-only'); END;
CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
BEGIN SELECT RAISE(ABORT, 'ledger is append-only'); END;

-- As in 0006, plus the 'paid' balance (after bonus: PostgreSQL's lock order). A chat's pool
-- counts what its jobs hold or spend of every kind of credit.
CREATE TRIGGER ledger_counts AFTER INSERT ON ledger
BEGIN
    INSERT INTO counters (scope, key, period, units)
    SELECT 'user_day', NEW.actor_key, NEW.day, NEW.credits WHERE NEW.credits != 0
    ON CONFLICT (scope, key, period) DO UPDATE SET units = units + excluded.units;
    INSERT INTO counters (scope, key, period, units)
    SELECT 'user_month', NEW.actor_key, NEW.month, NEW.credits WHERE NEW.credits != 0
    ON CONFLICT (scope, key, period) DO UPDATE SET units = units + excluded.units;
    INSERT INTO counters (scope, key, period, units)
    SELECT 'bonus', NEW.actor_key, '', NEW.bonus WHERE NEW.bonus != 0
    ON CONFLICT (scope, key, period) DO UPDATE SET units = units + excluded.units;
    INSERT INTO counters (scope, key, period, units)
    SELECT 'paid', NEW.actor_key, '', NEW.paid WHERE NEW.paid != 0
    ON CONFLICT (scope, key, period) DO UPDATE SET units = units + excluded.units;
    INSERT INTO counters (scope, key, period, units)
    SELECT 'chat_day', NEW.chat_key, NEW.day,
           NEW.credits - CASE WHEN NEW.kind IN ('reserve', 'settle', 'refund')
                              THEN NEW.bonus + NEW.paid ELSE 0 END
    WHERE NEW.chat_key IS NOT NULL
      AND NEW.credits - CASE WHEN NEW.kind IN ('reserve', 'settle', 'refund')
                             THEN NEW.bonus + NEW.paid ELSE 0 END != 0
    ON CONFLICT (scope, key, period) DO UPDATE SET units = units + excluded.units;
    INSERT INTO counters (scope, key, period, usd)
    SELECT 'usd_day', '', NEW.day, NEW.usd WHERE NEW.usd != 0
    ON CONFLICT (scope, key, period) DO UPDATE SET usd = usd + excluded.usd;
END;

ALTER TABLE reservations ADD COLUMN paid INTEGER NOT NULL DEFAULT 0;
-- what a refunded purchase takes back of ``paid`` should this job be refunded
ALTER TABLE reservations ADD COLUMN clawback INTEGER NOT NULL DEFAULT 0;

CREATE TABLE payments (
    platform       TEXT NOT NULL,             -- telegram | discord
    charge_id      TEXT NOT NULL,             -- telegram_payment_charge_id | entitlement id
    actor_key      TEXT NOT NULL,
    pack           TEXT NOT NULL,
    credits        INTEGER NOT NULL,
    stars          INTEGER NOT NULL DEFAULT 0,
    usd            REAL NOT NULL DEFAULT 0,   -- revenue, USD-equivalent
    state          TEXT NOT NULL CHECK (state IN ('received', 'credited', 'refunded')),
    day            TEXT NOT NULL,             -- quota day it arrived
    received_at    TEXT NOT NULL,
    credited_at    TEXT,
    refund_day     TEXT,
    removed        INTEGER NOT NULL DEFAULT 0,
    consumed       INTEGER NOT NULL DEFAULT 0,
    note           TEXT,
    PRIMARY KEY (platform, charge_id)
);
CREATE INDEX payments_actor ON payments (actor_key);
CREATE INDEX payments_day ON payments (day);
CREATE INDEX payments_pending ON payments (state) WHERE state = 'received';
