-- score integer → double precision: PostgreSQL prints the partial index's predicate and the
-- check again with casts ((score <> (0)::double precision)); they are the same constraints,
-- folded into the type change. ratings_heavy_idx really changes its predicate: reported.
CREATE TABLE ratings (
    id integer PRIMARY KEY,
    score double precision,
    weight integer NOT NULL DEFAULT 1,
    CONSTRAINT ratings_score_ck CHECK (score <= 100)
);
CREATE INDEX ratings_scored_idx ON ratings (id) WHERE score <> 0;
CREATE INDEX ratings_heavy_idx ON ratings (id) WHERE weight >= 10;
