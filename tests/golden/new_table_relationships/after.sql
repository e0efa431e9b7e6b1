-- Two new tables with foreign keys: to existing tables, to each other and to itself. Each
-- foreign key is a new relationship (safe, an index in MongoDB), reported beside the table.
CREATE TABLE publishers (id integer PRIMARY KEY, name text NOT NULL);
CREATE TABLE ad_slots (id integer PRIMARY KEY, publisher_id integer NOT NULL REFERENCES publishers (id), size text);
CREATE TABLE slot_bookings (
    id bigint PRIMARY KEY,
    slot_id integer NOT NULL REFERENCES ad_slots (id) ON DELETE CASCADE,
    booked_by integer REFERENCES publishers (id),
    week date NOT NULL
);
CREATE TABLE booking_notes (
    id integer PRIMARY KEY,
    booking_id bigint NOT NULL REFERENCES slot_bookings (id),
    reply_to integer REFERENCES booking_notes (id),
    body text
);
