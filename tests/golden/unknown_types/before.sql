CREATE TABLE places (
    id integer PRIMARY KEY,
    location point,
    name text
);
