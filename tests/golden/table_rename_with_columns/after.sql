-- vendor_contacts → supplier_contacts in the same release as contact_name → full_name, and
-- shipments → deliveries with two of its five columns renamed: table renames carrying their
-- column renames. sessions is dropped and invoices added: nothing alike, no candidate.
CREATE TABLE supplier_contacts (id integer PRIMARY KEY, full_name text);
CREATE TABLE deliveries (
    id bigint PRIMARY KEY,
    courier text,
    shipped_on date,
    weight_kg numeric(8,2),
    tracking_code text
);
CREATE TABLE invoices (id bigint PRIMARY KEY, total numeric(12,2), issued date NOT NULL);
