CREATE TABLE currencies (id integer PRIMARY KEY, iso_code character(3) NOT NULL UNIQUE, label text);
CREATE TABLE rate_cards (card_no integer, version integer, price numeric, PRIMARY KEY (card_no, version));
