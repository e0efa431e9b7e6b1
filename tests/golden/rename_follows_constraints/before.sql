CREATE TABLE workspaces (id integer PRIMARY KEY, title text NOT NULL);
CREATE TABLE channels (
    id integer PRIMARY KEY,
    workspace_ref integer NOT NULL REFERENCES workspaces (id),
    handle text NOT NULL,
    score integer,
    CONSTRAINT channels_handle_uq UNIQUE (workspace_ref, handle),
    CONSTRAINT channels_score_ck CHECK (score >= 0)
);
CREATE INDEX channels_workspace_idx ON channels (workspace_ref);
CREATE INDEX channels_scored_idx ON channels (handle) WHERE score IS NOT NULL;
CREATE TABLE posts (
    id integer PRIMARY KEY,
    workspace_ref integer REFERENCES workspaces (id),
    channel_id integer REFERENCES channels (id),
    body text
);
CREATE INDEX posts_workspace_idx ON posts (workspace_ref, id);
CREATE TABLE tags (code text PRIMARY KEY, label text);
CREATE TABLE post_tags (
    post_id integer REFERENCES posts (id),
    tag_code text REFERENCES tags (code),
    PRIMARY KEY (post_id, tag_code)
);
CREATE TABLE archive_boxes (id integer PRIMARY KEY, shelf text, opened date);
CREATE TABLE box_items (id integer PRIMARY KEY, box_id integer REFERENCES archive_boxes (id), sku text);
