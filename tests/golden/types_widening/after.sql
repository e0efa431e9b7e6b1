CREATE TABLE line_items (
    id bigint PRIMARY KEY,
    units integer,
    impressions bigint,
    title character varying(100),
    description text,
    rate numeric(12,2),
    ratio numeric,
    starts_at timestamp with time zone,
    ends_on timestamp without time zone,
    weight double precision,
    tags character varying(40)[]
);
