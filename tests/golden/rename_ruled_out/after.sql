-- listings: is_promoted (boolean) dropped and is_hidden (boolean NOT NULL DEFAULT false, at
-- the end) added; region_code (integer) dropped and region_id (integer NOT NULL, a foreign
-- key, at the end) added. Same types, but nullability, default, place and references say
-- these are new columns: no rename candidates. sellers.nick → handle keeps everything: a
-- candidate.
CREATE TABLE regions (id integer PRIMARY KEY, name text NOT NULL);
CREATE TABLE listings (
    id integer PRIMARY KEY,
    title text NOT NULL,
    price numeric(10,2),
    is_hidden boolean NOT NULL DEFAULT false,
    region_id integer NOT NULL REFERENCES regions (id)
);
CREATE TABLE sellers (id integer PRIMARY KEY, handle text, joined date);
