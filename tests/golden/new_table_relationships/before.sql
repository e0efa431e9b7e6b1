CREATE TABLE publishers (id integer PRIMARY KEY, name text NOT NULL);
CREATE TABLE ad_slots (id integer PRIMARY KEY, publisher_id integer NOT NULL REFERENCES publishers (id), size text);
