-- /config: a group's or server's settings as JSON (bot/groups.py), who last changed them, and
-- for a chat inside a group (a Discord channel) the group it belongs to (issue 17)
ALTER TABLE chats ADD COLUMN settings TEXT;
ALTER TABLE chats ADD COLUMN settings_by TEXT;
ALTER TABLE chats ADD COLUMN group_key TEXT;
