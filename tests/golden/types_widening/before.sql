CREATE TABLE line_items (
    id integer PRIMARY KEY,
    units smallint,
    impressions integer,
    title character varying(50),
    description character varying(200),
    rate numeric(10,2),
    ratio numeric(6,4),
    starts_at timestamp without time zone,
    ends_on date,
    weight real,
    tags character varying(20)[]
);
