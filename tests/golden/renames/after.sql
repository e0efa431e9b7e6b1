-- advertisers.legacy_name → display_name (same type, same place); phone (text) dropped and
-- phone_ext (integer) added: incompatible types, so a drop and an add, not a rename.
-- media_buys → purchases with the same columns: a table rename candidate.
CREATE TABLE advertisers (
    id integer PRIMARY KEY,
    display_name text NOT NULL,
    website text,
    created_at timestamp with time zone,
    phone_ext integer
);
CREATE TABLE purchases (
    id integer PRIMARY KEY,
    advertiser_id integer REFERENCES advertisers(id),
    amount numeric(12,2),
    placed_at timestamp with time zone,
    channel text
);
