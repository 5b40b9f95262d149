-- /config: a group's settings as JSON, who last changed them, and a chat's group (issue 17)
ALTER TABLE chats ADD COLUMN settings TEXT;
ALTER TABLE chats ADD COLUMN settings_by TEXT;
ALTER TABLE chats ADD COLUMN group_key TEXT;
CREATE INDEX chats_group ON chats (group_key) WHERE group_key IS NOT NULL;
