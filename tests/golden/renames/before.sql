CREATE TABLE advertisers (
    id integer PRIMARY KEY,
    legacy_name text NOT NULL,
    website text,
    phone text,
    created_at timestamp with time zone
);
CREATE TABLE media_buys (
    id integer PRIMARY KEY,
    advertiser_id integer REFERENCES advertisers(id),
    amount numeric(12,2),
    placed_at timestamp with time zone,
    channel text
);
