-- The default mapping: field names are the column names, a single-column key is _id.
CREATE TABLE readings (
    id integer PRIMARY KEY,
    taken_at timestamp with time zone NOT NULL,
    local_time timestamp without time zone,
    day date
);
INSERT INTO readings
SELECT i, timestamptz '2026-05-04 10:00:00.000001+00' + i * interval '17 minutes 3.141592 seconds',
       timestamp '2026-05-04 12:00:00' + i * interval '0.000999 seconds', date '2026-05-01' + i
  FROM generate_series(1, 30) AS i;
CREATE TABLE members (id integer PRIMARY KEY, email text NOT NULL UNIQUE, nickname text);
INSERT INTO members SELECT i, 'm' || i || '@example.org', 'nick ' || i FROM generate_series(1, 15) AS i;
