CREATE TABLE metrics (
    id bigint NOT NULL,
    day date NOT NULL,
    clicks integer,
    PRIMARY KEY (id, day)
) PARTITION BY RANGE (day);
CREATE TABLE metrics_2026_10 PARTITION OF metrics FOR VALUES FROM ('2026-10-01') TO ('2026-11-01');
CREATE TABLE metrics_2026_11 PARTITION OF metrics FOR VALUES FROM ('2026-11-01') TO ('2026-12-01')
    PARTITION BY HASH (id);
CREATE TABLE metrics_2026_11_h0 PARTITION OF metrics_2026_11 FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE metrics_2026_11_h1 PARTITION OF metrics_2026_11 FOR VALUES WITH (MODULUS 2, REMAINDER 1);
CREATE INDEX metrics_day_idx ON metrics (day);
CREATE TABLE metric_notes (
    id integer PRIMARY KEY,
    metric_id bigint,
    metric_day date,
    FOREIGN KEY (metric_id, metric_day) REFERENCES metrics (id, day)
);
