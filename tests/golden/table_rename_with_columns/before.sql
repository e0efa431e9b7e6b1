CREATE TABLE vendor_contacts (id integer PRIMARY KEY, contact_name text);
CREATE TABLE shipments (
    id bigint PRIMARY KEY,
    carrier text,
    shipped_on date,
    weight_kg numeric(8,2),
    tracking text
);
CREATE TABLE sessions (token uuid PRIMARY KEY, expires timestamp with time zone);
