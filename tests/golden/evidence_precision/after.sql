-- readings: taken_at → measured_at and local_time → wall_time, timestamps with microseconds
-- that MongoDB holds in milliseconds. members: the primary key moves from id to email while
-- nickname → display_name; the documents are still keyed by id. Nothing else changed, so all
-- sampled values are equal once compared at MongoDB's precision and by the old key.
CREATE TABLE readings (
    id integer PRIMARY KEY,
    measured_at timestamp with time zone NOT NULL,
    wall_time timestamp without time zone,
    day date
);
INSERT INTO readings
SELECT i, timestamptz '2026-05-04 10:00:00.000001+00' + i * interval '17 minutes 3.141592 seconds',
       timestamp '2026-05-04 12:00:00' + i * interval '0.000999 seconds', date '2026-05-01' + i
  FROM generate_series(1, 30) AS i;
CREATE TABLE members (id integer NOT NULL, email text PRIMARY KEY, display_name text);
INSERT INTO members SELECT i, 'm' || i || '@example.org', 'nick ' || i FROM generate_series(1, 15) AS i;
