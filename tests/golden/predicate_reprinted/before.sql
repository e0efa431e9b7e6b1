CREATE TABLE ratings (
    id integer PRIMARY KEY,
    score integer,
    weight smallint NOT NULL DEFAULT 1,
    CONSTRAINT ratings_score_ck CHECK (score <= 100)
);
CREATE INDEX ratings_scored_idx ON ratings (id) WHERE score <> 0;
CREATE INDEX ratings_heavy_idx ON ratings (id) WHERE weight >= 5;
