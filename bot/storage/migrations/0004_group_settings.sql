-- /config: a group's or server's settings as JSON (bot/groups.py), and who last changed them (issue 17)
ALTER TABLE chats ADD COLUMN settings TEXT;
ALTER TABLE chats ADD COLUMN settings_by TEXT;
