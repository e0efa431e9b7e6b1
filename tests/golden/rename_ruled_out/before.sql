CREATE TABLE regions (id integer PRIMARY KEY, name text NOT NULL);
CREATE TABLE listings (
    id integer PRIMARY KEY,
    title text NOT NULL,
    is_promoted boolean,
    region_code integer,
    price numeric(10,2)
);
CREATE TABLE sellers (id integer PRIMARY KEY, nick text, joined date);
