CREATE TABLE line_items (
    id integer PRIMARY KEY,
    units smallint,
    title character varying(50),
    description character varying(255),
    rate numeric,
    cost numeric(10,2),
    starts_at timestamp without time zone,
    weight real,
    is_active text,
    quantity integer
);
