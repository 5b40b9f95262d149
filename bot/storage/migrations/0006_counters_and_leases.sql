-- Scale-out (issue 14). Window counters kept by the database from the ledger, so a quota check
-- reads one row per window (the global USD cap no longer sums a day of everyone's ledger); the
-- ledger stays the record they are derived from. Processes hold leases, reservations an owner:
-- only a reservation whose owner's lease lapsed is refunded by someone else.
CREATE TABLE counters (
    scope          TEXT NOT NULL,             -- user_day | user_month | bonus | chat_day | usd_day
    key            TEXT NOT NULL,             -- actor or chat key; '' for usd_day
    period         TEXT NOT NULL,             -- day or month; '' for bonus
    units          INTEGER NOT NULL DEFAULT 0,
    usd            REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, key, period)
) WITHOUT ROWID;

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

-- The same order as PostgreSQL's trigger and its locks (user, bonus, chat, global).
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
    SELECT 'chat_day', NEW.chat_key, NEW.day,
           NEW.credits - CASE WHEN NEW.kind = 'grant' THEN 0 ELSE NEW.bonus END
    WHERE NEW.chat_key IS NOT NULL
      AND NEW.credits - CASE WHEN NEW.kind = 'grant' THEN 0 ELSE NEW.bonus END != 0
    ON CONFLICT (scope, key, period) DO UPDATE SET units = units + excluded.units;
    INSERT INTO counters (scope, key, period, usd)
    SELECT 'usd_day', '', NEW.day, NEW.usd WHERE NEW.usd != 0
    ON CONFLICT (scope, key, period) DO UPDATE SET usd = usd + excluded.usd;
END;

-- one row per running process; a row whose lease_until has passed is a dead process
CREATE TABLE instances (
    id             TEXT PRIMARY KEY,
    host           TEXT NOT NULL,
    pid            INTEGER NOT NULL,
    started        TEXT NOT NULL,
    lease_until    TEXT NOT NULL
);

-- the instance that holds a reservation (NULL: held before owners existed, so by a dead one)
ALTER TABLE reservations ADD COLUMN owner TEXT;
