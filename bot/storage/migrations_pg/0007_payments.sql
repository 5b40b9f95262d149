-- PostgreSQL twin of migrations/0007_payments.sql: purchased credits (ledger.paid, counter
-- 'paid', reservations.paid / clawback) and the payments table. The counter rows are locked
-- and updated in one order: user day, user month, bonus, paid, chat day, global day.
ALTER TABLE ledger DROP CONSTRAINT ledger_kind_check;
ALTER TABLE ledger ADD CONSTRAINT ledger_kind_check CHECK (kind IN (
    'reserve', 'settle', 'refund', 'grant', 'purchase', 'purchase_refund', 'expire'));
-- A constant default adds the column without rewriting (or updating) a single row.
ALTER TABLE ledger ADD COLUMN paid INTEGER NOT NULL DEFAULT 0;

CREATE OR REPLACE FUNCTION ledger_count() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    pool BIGINT := NEW.credits - CASE WHEN NEW.kind IN ('reserve', 'settle', 'refund')
                                      THEN NEW.bonus + NEW.paid ELSE 0 END;
BEGIN
    IF NEW.credits <> 0 THEN
        INSERT INTO counters AS c (scope, key, period, units)
        VALUES ('user_day', NEW.actor_key, NEW.day, NEW.credits)
        ON CONFLICT (scope, key, period) DO UPDATE SET units = c.units + EXCLUDED.units;
        INSERT INTO counters AS c (scope, key, period, units)
        VALUES ('user_month', NEW.actor_key, NEW.month, NEW.credits)
        ON CONFLICT (scope, key, period) DO UPDATE SET units = c.units + EXCLUDED.units;
    END IF;
    IF NEW.bonus <> 0 THEN
        INSERT INTO counters AS c (scope, key, period, units)
        VALUES ('bonus', NEW.actor_key, '', NEW.bonus)
        ON CONFLICT (scope, key, period) DO UPDATE SET units = c.units + EXCLUDED.units;
    END IF;
    IF NEW.paid <> 0 THEN
        INSERT INTO counters AS c (scope, key, period, units)
        VALUES ('paid', NEW.actor_key, '', NEW.paid)
        ON CONFLICT (scope, key, period) DO UPDATE SET units = c.units + EXCLUDED.units;
    END IF;
    IF NEW.chat_key IS NOT NULL AND pool <> 0 THEN
        INSERT INTO counters AS c (scope, key, period, units)
        VALUES ('chat_day', NEW.chat_key, NEW.day, pool)
        ON CONFLICT (scope, key, period) DO UPDATE SET units = c.units + EXCLUDED.units;
    END IF;
    IF NEW.usd <> 0 THEN
        INSERT INTO counters AS c (scope, key, period, usd)
        VALUES ('usd_day', '', NEW.day, NEW.usd)
        ON CONFLICT (scope, key, period) DO UPDATE SET usd = c.usd + EXCLUDED.usd;
    END IF;
    RETURN NULL;
END $$;

ALTER TABLE reservations ADD COLUMN paid INTEGER NOT NULL DEFAULT 0;
ALTER TABLE reservations ADD COLUMN clawback INTEGER NOT NULL DEFAULT 0;

CREATE TABLE payments (
    platform       TEXT NOT NULL,
    charge_id      TEXT NOT NULL,
    actor_key      TEXT NOT NULL,
    pack           TEXT NOT NULL,
    credits        INTEGER NOT NULL,
    stars          INTEGER NOT NULL DEFAULT 0,
    usd            DOUBLE PRECISION NOT NULL DEFAULT 0,
    state          TEXT NOT NULL CHECK (state IN ('received', 'credited', 'refunded')),
    day            TEXT NOT NULL,
    received_at    TIMESTAMPTZ NOT NULL,
    credited_at    TIMESTAMPTZ,
    refund_day     TEXT,
    removed        INTEGER NOT NULL DEFAULT 0,
    consumed       BOOLEAN NOT NULL DEFAULT FALSE,
    note           TEXT,
    PRIMARY KEY (platform, charge_id)
);
CREATE INDEX payments_actor ON payments (actor_key);
CREATE INDEX payments_day ON payments (day);
CREATE INDEX payments_pending ON payments (state) WHERE state = 'received';
