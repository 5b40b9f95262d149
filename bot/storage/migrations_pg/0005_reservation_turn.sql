-- the turn a held reservation pays for: delivery settles or refunds by turn id, in any process
ALTER TABLE reservations ADD COLUMN turn_id TEXT;
CREATE INDEX reservations_turn ON reservations (turn_id) WHERE turn_id IS NOT NULL;
