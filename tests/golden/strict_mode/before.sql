CREATE TABLE campaigns (id integer PRIMARY KEY, name text);
