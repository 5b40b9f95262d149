-- the operator gallery and the playground list recent turns by time
CREATE INDEX turns_created ON turns (created_at);
CREATE INDEX turns_actor_created ON turns (actor_key, created_at);
