-- Types outside the design's type map are reported by name, never guessed at.
CREATE TABLE places (
    id integer PRIMARY KEY,
    location box,
    name text,
    search tsvector,
    open_hours int4range
);
