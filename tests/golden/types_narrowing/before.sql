CREATE TABLE line_items (
    id bigint PRIMARY KEY,
    units integer,
    title character varying(100),
    description text,
    rate text,
    cost numeric(12,2),
    starts_at timestamp with time zone,
    weight double precision,
    is_active boolean,
    quantity numeric(12,2)
);
