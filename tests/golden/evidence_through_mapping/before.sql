-- Loaded with rules.yaml beside this file (camelCase field names, a field renamed by a rule,
-- money rounded to cents), so the documents in MongoDB differ from the rows in the ways the
-- mapping says.
CREATE TABLE events (id integer PRIMARY KEY, happened_at timestamp with time zone NOT NULL);
INSERT INTO events
SELECT i, timestamptz '2026-03-01 08:00:00+00' + i * interval '1 hour 1.234567 second'
  FROM generate_series(1, 30) AS i;
CREATE TABLE units (id integer PRIMARY KEY, label text NOT NULL);
INSERT INTO units SELECT i, 'unit ' || i FROM generate_series(1, 20) AS i;
CREATE TABLE placements (
    campaign_no integer, slot_no integer, note_text text,
    PRIMARY KEY (campaign_no, slot_no)
);
INSERT INTO placements SELECT c, s, 'c' || c || 's' || s FROM generate_series(1, 4) AS c, generate_series(1, 5) AS s;
CREATE TABLE prices (id integer PRIMARY KEY, amount numeric(12,4));
INSERT INTO prices SELECT i, i * 1.2345 FROM generate_series(1, 25) AS i;
CREATE TABLE accounts (id integer PRIMARY KEY, code text NOT NULL UNIQUE, owner_name text);
INSERT INTO accounts SELECT i, 'ACC' || i, 'owner ' || i FROM generate_series(1, 15) AS i;
