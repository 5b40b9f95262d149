-- /settings can keep Google Search grounding on by default (issue 11)
ALTER TABLE users ADD COLUMN search TEXT;
