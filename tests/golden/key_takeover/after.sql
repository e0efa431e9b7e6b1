-- currencies: the unique iso_code becomes the primary key (id stays, NOT NULL): the unique
-- constraint is taken over by the key, nothing was relaxed. rate_cards: a surrogate id becomes
-- the key and (card_no, version) keep a unique constraint: no new uniqueness on existing data.
CREATE TABLE currencies (id integer NOT NULL, iso_code character(3) PRIMARY KEY, label text);
CREATE TABLE rate_cards (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    card_no integer NOT NULL,
    version integer NOT NULL,
    price numeric,
    UNIQUE (card_no, version)
);
