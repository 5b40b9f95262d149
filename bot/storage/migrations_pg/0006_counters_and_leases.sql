-- Scale-out (issue 14): window counters kept from the ledger by a trigger, instances with leases,
-- reservation owners. Reserve locks its counter rows first (postgres_tx.py); the trigger touches
-- them in the same order (user day, user month, bonus, chat day, global day), so transactions of
-- many processes queue on a row instead of deadlocking.
CREATE TABLE counters (
    scope          TEXT NOT NULL,             -- user_day | user_month | bonus | chat_day | usd_day
    key            TEXT NOT NULL,             -- actor or chat key; '' for usd_day
    period         TEXT NOT NULL,             -- day or month; '' for bonus
    units          BIGINT NOT NULL DEFAULT 0,
    usd            DOUBLE PRECISION NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, key, period)
);

INSERT INTO counters (scope, key, period, units)
SELECT 'user_day', actor_key, day, SUM(credits) FROM ledger GROUP BY actor_key, day;
INSERT INTO counters (scope, key, period, units)
SELECT 'user_month', actor_key, month, SUM(credits) FROM ledger GROUP BY actor_key, month;
INSERT INTO counters (scope, key, period, units)
SELECT 'bonus', actor_key, '', SUM(bonus) FROM ledger GROUP BY actor_key;
INSERT INTO counters (scope, key, period, units)
SELECT 'chat_day', chat_key, day, SUM(credits) - SUM(CASE WHEN kind = 'grant' THEN 0 ELSE bonus END)
FROM ledger WHERE chat_key IS NOT NULL GROUP BY chat_key, day;
INSERT INTO counters (scope, key, period, usd)
SELECT 'usd_day', '', day, SUM(usd) FROM ledger GROUP BY day;

CREATE FUNCTION ledger_count() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    pool BIGINT := NEW.credits - CASE WHEN NEW.kind = 'grant' THEN 0 ELSE NEW.bonus END;
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
CREATE TRIGGER ledger_counts AFTER INSERT ON ledger FOR EACH ROW EXECUTE FUNCTION ledger_count();

-- one row per running process; lease_until is the database's clock, never a process's
CREATE TABLE instances (
    id             TEXT PRIMARY KEY,
    host           TEXT NOT NULL,
    pid            INTEGER NOT NULL,
    started        TIMESTAMPTZ NOT NULL,
    lease_until    TIMESTAMPTZ NOT NULL
);

ALTER TABLE reservations ADD COLUMN owner TEXT;
