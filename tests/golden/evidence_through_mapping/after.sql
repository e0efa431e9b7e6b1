-- events.happened_at → occurred_at (timestamps with microseconds; MongoDB keeps milliseconds);
-- units.id → unit_id (the column behind _id) and label → caption (stored as `title` by a
-- rule); placements.note_text → remark_text (a composite _id whose keys are camelCase field
-- names); prices.amount → net_amount (documents hold it rounded to cents); accounts: the
-- primary key moves from id to code while owner_name → holder_name (documents are still
-- keyed by id). Same data everywhere: every candidate's evidence finds every value equal.
CREATE TABLE events (id integer PRIMARY KEY, occurred_at timestamp with time zone NOT NULL);
INSERT INTO events
SELECT i, timestamptz '2026-03-01 08:00:00+00' + i * interval '1 hour 1.234567 second'
  FROM generate_series(1, 30) AS i;
CREATE TABLE units (unit_id integer PRIMARY KEY, caption text NOT NULL);
INSERT INTO units SELECT i, 'unit ' || i FROM generate_series(1, 20) AS i;
CREATE TABLE placements (
    campaign_no integer, slot_no integer, remark_text text,
    PRIMARY KEY (campaign_no, slot_no)
);
INSERT INTO placements SELECT c, s, 'c' || c || 's' || s FROM generate_series(1, 4) AS c, generate_series(1, 5) AS s;
CREATE TABLE prices (id integer PRIMARY KEY, net_amount numeric(12,4));
INSERT INTO prices SELECT i, i * 1.2345 FROM generate_series(1, 25) AS i;
CREATE TABLE accounts (id integer NOT NULL, code text PRIMARY KEY, holder_name text);
INSERT INTO accounts SELECT i, 'ACC' || i, 'owner ' || i FROM generate_series(1, 15) AS i;
