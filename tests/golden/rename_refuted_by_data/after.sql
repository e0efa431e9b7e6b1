-- meters.legacy_count dropped and tally added in its place, same type: by structure a rename,
-- but none of the 60 values the previous load left in MongoDB is in the new column, so it is
-- reported as a drop and an add. gauges.reading → level, 35 of 40 values unchanged since the
-- load: a rename candidate, the data agreeing.
CREATE TABLE meters (id integer PRIMARY KEY, site text NOT NULL, tally integer);
INSERT INTO meters SELECT i, 'site ' || i, i * 7 + 1 FROM generate_series(1, 60) AS i;
CREATE TABLE gauges (id integer PRIMARY KEY, level integer);
INSERT INTO gauges SELECT i, CASE WHEN i <= 5 THEN 0 ELSE i * 3 END FROM generate_series(1, 40) AS i;
