CREATE TABLE meters (id integer PRIMARY KEY, site text NOT NULL, legacy_count integer);
INSERT INTO meters SELECT i, 'site ' || i, i * 7 FROM generate_series(1, 60) AS i;
CREATE TABLE gauges (id integer PRIMARY KEY, reading integer);
INSERT INTO gauges SELECT i, i * 3 FROM generate_series(1, 40) AS i;
