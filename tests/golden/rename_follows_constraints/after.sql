-- channels.workspace_ref and posts.workspace_ref → workspace_id, channels.score → points,
-- tags.code → slug (its primary key, referenced by post_tags), archive_boxes → storage_boxes
-- (referenced by box_items). Every key, foreign key, unique, check and index over them comes
-- along with the rename: folded into it, not reported as removed + added.
CREATE TABLE workspaces (id integer PRIMARY KEY, title text NOT NULL);
CREATE TABLE channels (
    id integer PRIMARY KEY,
    workspace_id integer NOT NULL REFERENCES workspaces (id),
    handle text NOT NULL,
    points integer,
    CONSTRAINT channels_handle_uq UNIQUE (workspace_id, handle),
    CONSTRAINT channels_score_ck CHECK (points >= 0)
);
CREATE INDEX channels_workspace_idx ON channels (workspace_id);
CREATE INDEX channels_scored_idx ON channels (handle) WHERE points IS NOT NULL;
CREATE TABLE posts (
    id integer PRIMARY KEY,
    workspace_id integer REFERENCES workspaces (id),
    channel_id integer REFERENCES channels (id),
    body text
);
CREATE INDEX posts_workspace_idx ON posts (workspace_id, id);
CREATE TABLE tags (slug text PRIMARY KEY, label text);
CREATE TABLE post_tags (
    post_id integer REFERENCES posts (id),
    tag_code text REFERENCES tags (slug),
    PRIMARY KEY (post_id, tag_code)
);
CREATE TABLE storage_boxes (id integer PRIMARY KEY, shelf text, opened date);
CREATE TABLE box_items (id integer PRIMARY KEY, box_id integer REFERENCES storage_boxes (id), sku text);
