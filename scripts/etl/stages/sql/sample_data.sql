-- Data for the synthetic media_tool, generated inside PostgreSQL.
--
-- Every value is a pure function of (seed, salt, row number): pg_temp.rnd hashes the three,
-- so the result does not depend on plan shape, join order or parallel workers the way a
-- setseed()/random() stream would. Same seed, same data, on any PostgreSQL >= 11 (the
-- hash is the one hash partitioning relies on, so it is kept stable across releases; it
-- differs on big-endian CPUs). hashtextextended is ~6x faster than md5 here.
--
-- Session settings read here: sample.seed, sample.metrics_rows. `etl sample` runs the file
-- one `-- @step <table>` section at a time, in order, for progress reporting.
-- Dates are fixed (the data is "as of" 2025-09-30), never now(), for the same reason.

-- @step helpers
CREATE FUNCTION pg_temp.rnd(salt text, i bigint) RETURNS double precision
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT (hashtextextended(salt || '/' || i, current_setting('sample.seed')::bigint) & 4503599627370495)::double precision
           / 4503599627370496.0::double precision
$$;
CREATE FUNCTION pg_temp.rint(salt text, i bigint, lo bigint, hi bigint) RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT lo + floor(pg_temp.rnd(salt, i) * (hi - lo + 1))::bigint
$$;
CREATE FUNCTION pg_temp.pick(salt text, i bigint, choices text[]) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT choices[1 + floor(pg_temp.rnd(salt, i) * cardinality(choices))::int]
$$;
-- n distinct picks (n <= cardinality), in the choices' order: tags and device lists.
CREATE FUNCTION pg_temp.picks(salt text, i bigint, choices text[], n int) RETURNS text[]
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(c ORDER BY o), '{}')
      FROM (SELECT c, o FROM unnest(choices) WITH ORDINALITY AS u(c, o)
             ORDER BY pg_temp.rnd(salt || '/' || o, i) LIMIT greatest(n, 0)) s
$$;
CREATE FUNCTION pg_temp.uid(salt text, i bigint) RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT md5(current_setting('sample.seed') || '/' || salt || '/' || i)::uuid
$$;
CREATE FUNCTION pg_temp.ts(salt text, i bigint, base timestamptz, span_days int) RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT date_trunc('second', base + pg_temp.rnd(salt, i) * span_days * interval '1 day')
$$;

-- @step agencies
INSERT INTO agencies (id, name, code, country, settings, created_at)
SELECT i,
       (ARRAY['Northwind Media', 'Blue Harbor Partners', 'Crescent & Pike', 'Meridian Reach',
              'Open Field Agency', 'Lighthouse Digital', 'Atlas Media Group', 'Red Kite Communications',
              'Summit Planning Co', 'Juniper & Gray', 'Tidewater Media', 'Foxglove Agency'])[i],
       'AG' || lpad(i::text, 3, '0'),
       pg_temp.pick('agency.country', i, ARRAY['US', 'US', 'US', 'CA', 'GB', 'DE', 'FR', 'AU']),
       jsonb_build_object(
           'billing', jsonb_build_object('currency', pg_temp.pick('agency.cur', i, ARRAY['USD', 'USD', 'EUR', 'GBP']),
                                         'net_days', pg_temp.pick('agency.net', i, ARRAY['30', '45', '60'])::int),
           'approvals', jsonb_build_object('required', pg_temp.rnd('agency.appr', i) < 0.6,
                                           'threshold', pg_temp.rint('agency.thr', i, 1, 20) * 5000),
           'contacts', jsonb_build_array(jsonb_build_object('role', 'billing', 'email', 'billing' || i || '@agency.example'))),
       pg_temp.ts('agency.created', i, '2019-01-01 00:00:00+00', 1500)
  FROM generate_series(1, 12) AS i;

-- @step advertisers
INSERT INTO advertisers (id, agency_id, name, industry, website, tags, external_ref, is_active, created_at)
SELECT i,
       CASE WHEN pg_temp.rnd('adv.direct', i) < 0.15 THEN NULL ELSE pg_temp.rint('adv.agency', i, 1, 12) END,
       pg_temp.pick('adv.a', i, ARRAY['Acme', 'Globex', 'Initech', 'Umbrella', 'Stark', 'Wayne', 'Hooli', 'Vandelay',
                                      'Soylent', 'Wonka', 'Pied Piper', 'Cyberdyne', 'Tyrell', 'Gringotts', 'Oceanic'])
           || ' ' || pg_temp.pick('adv.b', i, ARRAY['Foods', 'Motors', 'Bank', 'Outdoors', 'Pharma', 'Telecom', 'Travel',
                                                    'Beverages', 'Apparel', 'Insurance', 'Games', 'Home'])
           || ' #' || i,
       pg_temp.pick('adv.ind', i, ARRAY['CPG', 'Automotive', 'Finance', 'Retail', 'Healthcare', 'Telecom', 'Travel',
                                        'Entertainment', 'Technology', 'Insurance']),
       CASE WHEN pg_temp.rnd('adv.web', i) < 0.2 THEN NULL ELSE 'https://www.brand' || i || '.example' END,
       pg_temp.picks('adv.tags', i, ARRAY['national', 'regional', 'seasonal', 'always-on', 'priority', 'new-business',
                                          'brand-safety-strict'], pg_temp.rint('adv.ntags', i, 0, 3)::int),
       pg_temp.uid('adv.ref', i),
       pg_temp.rnd('adv.active', i) >= 0.1,
       pg_temp.ts('adv.created', i, '2020-01-01 00:00:00+00', 1300)
  FROM generate_series(1, 150) AS i;

-- @step users
INSERT INTO users (id, email, full_name, role, agency_id, is_active, last_login_at, preferences, created_at)
SELECT pg_temp.uid('user', i),
       lower(f || '.' || l || i || '@mediatool.example'),
       f || ' ' || l,
       pg_temp.pick('user.role', i, ARRAY['admin', 'planner', 'planner', 'buyer', 'buyer', 'analyst', 'viewer'])::user_role,
       CASE WHEN pg_temp.rnd('user.internal', i) < 0.3 THEN NULL ELSE pg_temp.rint('user.agency', i, 1, 12) END,
       pg_temp.rnd('user.active', i) >= 0.08,
       CASE WHEN pg_temp.rnd('user.never', i) < 0.12 THEN NULL
            ELSE pg_temp.ts('user.login', i, '2025-06-01 00:00:00+00', 120) END,
       CASE WHEN pg_temp.rnd('user.prefs', i) < 0.25 THEN NULL
            ELSE jsonb_build_object('timezone', pg_temp.pick('user.tz', i, ARRAY['America/New_York', 'America/Chicago',
                                                             'America/Los_Angeles', 'Europe/London', 'Europe/Berlin']),
                                    'notifications', jsonb_build_object('email', pg_temp.rnd('user.n1', i) < 0.8,
                                                                        'slack', pg_temp.rnd('user.n2', i) < 0.4),
                                    'dashboard', jsonb_build_object('default_range_days', pg_temp.pick('user.rng', i, ARRAY['7', '14', '30'])::int,
                                                                    'pinned', to_jsonb(pg_temp.picks('user.pin', i,
                                                                        ARRAY['spend', 'ctr', 'pacing', 'viewability', 'cpa'], 2))))
       END,
       pg_temp.ts('user.created', i, '2021-01-01 00:00:00+00', 1200)
  FROM generate_series(1, 90) AS i,
       LATERAL (SELECT pg_temp.pick('user.first', i, ARRAY['Ava', 'Ben', 'Chloe', 'Diego', 'Emma', 'Farah', 'Gus', 'Hana',
                                                          'Ivan', 'Jade', 'Kofi', 'Lena', 'Mateo', 'Nora', 'Omar', 'Priya']) AS f,
                       pg_temp.pick('user.last', i, ARRAY['Smith', 'Garcia', 'Chen', 'Okafor', 'Müller', 'Rossi', 'Novak',
                                                         'Tanaka', 'Silva', 'Dubois', 'Kowalski', 'Haddad']) AS l) AS n;

-- @step platforms
INSERT INTO platforms (id, code, name, channel, fee_rate, supports, api_config, is_active)
SELECT p.id, p.code, p.name, p.channel::line_item_type, p.fee, p.supports,
       jsonb_build_object('base_url', 'https://api.' || replace(p.code, '_', '-') || '.example/v' || (1 + p.id % 3),
                          'auth', jsonb_build_object('type', CASE WHEN p.id % 2 = 0 THEN 'oauth2' ELSE 'api_key' END,
                                                     'scopes', to_jsonb(ARRAY['reporting', 'campaigns'])),
                          'rate_limit', jsonb_build_object('per_minute', 60 * (1 + p.id % 4), 'burst', 10),
                          'report_lag_hours', 2 + p.id % 5),
       p.active
  FROM (VALUES (1, 'google_dv360', 'Display & Video 360', 'display', 0.1200, ARRAY['display', 'video', 'native'], true),
               (2, 'the_trade_desk', 'The Trade Desk', 'display', 0.1500, ARRAY['display', 'video', 'audio', 'ctv'], true),
               (3, 'youtube', 'YouTube', 'video', 0.0000, ARRAY['video'], true),
               (4, 'spotify_ads', 'Spotify Ad Studio', 'audio', 0.0500, ARRAY['audio', 'video'], true),
               (5, 'roku', 'Roku OneView', 'ctv', 0.0800, ARRAY['ctv', 'video'], true),
               (6, 'meta', 'Meta Ads', 'social', 0.0000, ARRAY['display', 'video', 'native'], true),
               (7, 'tiktok', 'TikTok Ads', 'social', 0.0000, ARRAY['video'], true),
               (8, 'linkedin', 'LinkedIn Marketing', 'social', 0.0000, ARRAY['display', 'native'], true),
               (9, 'google_ads', 'Google Ads', 'search', 0.0000, ARRAY['search', 'display'], true),
               (10, 'microsoft_ads', 'Microsoft Advertising', 'search', 0.0000, ARRAY['search'], true),
               (11, 'vistar', 'Vistar Media', 'dooh', 0.1800, ARRAY['dooh'], true),
               (12, 'amazon_dsp', 'Amazon DSP', 'video', 0.1000, ARRAY['display', 'video', 'ctv'], true),
               (13, 'hulu_ads', 'Hulu Ad Manager', 'ctv', 0.0600, ARRAY['ctv'], true),
               (14, 'pandora', 'Pandora for Brands', 'audio', 0.0700, ARRAY['audio'], false)
       ) AS p(id, code, name, channel, fee, supports, active);

-- @step campaigns
INSERT INTO campaigns (id, advertiser_id, owner_id, code, name, status, budget, currency, start_date, end_date,
                       objective, tags, targeting, legacy_field, created_at, updated_at)
SELECT i, adv, owner, code, name,
       CASE WHEN start_date > date '2025-09-30' THEN
                (CASE WHEN pg_temp.rnd('camp.draft', i) < 0.7 THEN 'draft' ELSE 'active' END)::campaign_status
            WHEN end_date < date '2025-09-30' THEN
                (CASE WHEN pg_temp.rnd('camp.arch', i) < 0.3 THEN 'archived' ELSE 'completed' END)::campaign_status
            ELSE (CASE WHEN pg_temp.rnd('camp.pause', i) < 0.15 THEN 'paused' ELSE 'active' END)::campaign_status END,
       budget, currency, start_date, end_date, objective, tags, targeting, legacy,
       created_at, created_at + pg_temp.rnd('camp.upd', i) * interval '90 days'
  FROM (SELECT i,
               pg_temp.rint('camp.adv', i, 1, 150) AS adv,
               CASE WHEN pg_temp.rnd('camp.noowner', i) < 0.04 THEN NULL
                    ELSE pg_temp.uid('user', pg_temp.rint('camp.owner', i, 1, 90)) END AS owner,
               'CMP-' || to_char(date '2024-01-01' + s, 'YYMM') || '-' || lpad(i::text, 5, '0') AS code,
               pg_temp.pick('camp.season', i, ARRAY['Spring', 'Summer', 'Fall', 'Holiday', 'Back to School', 'Q1', 'Q2',
                                                    'Q3', 'Q4', 'Evergreen', 'Launch'])
                   || ' ' || pg_temp.pick('camp.theme', i, ARRAY['Awareness', 'Promo', 'Retargeting', 'Brand Lift',
                                                                 'Product Launch', 'Sale', 'Loyalty', 'App Installs'])
                   || ' ' || (2024 + s / 366) AS name,
               round((1000 + pg_temp.rnd('camp.budget', i) ^ 3 * 2000000)::numeric, 2) AS budget,
               pg_temp.pick('camp.cur', i, ARRAY['USD', 'USD', 'USD', 'USD', 'EUR', 'GBP', 'CAD']) AS currency,
               date '2024-01-01' + s AS start_date,
               CASE WHEN pg_temp.rnd('camp.open', i) < 0.05 THEN NULL
                    ELSE date '2024-01-01' + s + pg_temp.rint('camp.len', i, 14, 150)::int END AS end_date,
               CASE WHEN pg_temp.rnd('camp.noobj', i) < 0.1 THEN NULL
                    ELSE pg_temp.pick('camp.obj', i, ARRAY['awareness', 'consideration', 'conversions', 'app_installs',
                                                           'video_views', 'store_visits']) END AS objective,
               pg_temp.picks('camp.tags', i, ARRAY['q4-push', 'brand', 'performance', 'test', 'holiday', 'upfront',
                                                   'programmatic', 'direct-io', 'pmp'], pg_temp.rint('camp.ntags', i, 0, 4)::int) AS tags,
               CASE WHEN pg_temp.rnd('camp.notgt', i) < 0.1 THEN NULL ELSE jsonb_build_object(
                   'geo', jsonb_build_object(
                       'countries', to_jsonb(pg_temp.picks('camp.cty', i, ARRAY['US', 'CA', 'GB', 'DE', 'FR', 'AU'],
                                                           pg_temp.rint('camp.ncty', i, 1, 3)::int)),
                       'dmas', CASE WHEN pg_temp.rnd('camp.nodma', i) < 0.5 THEN '[]'::jsonb
                                    ELSE to_jsonb(ARRAY[pg_temp.rint('camp.dma1', i, 500, 881), pg_temp.rint('camp.dma2', i, 500, 881)]) END),
                   'age', jsonb_build_object('min', pg_temp.pick('camp.amin', i, ARRAY['18', '21', '25', '35'])::int,
                                             'max', pg_temp.pick('camp.amax', i, ARRAY['34', '44', '54', '65'])::int),
                   'devices', to_jsonb(pg_temp.picks('camp.dev', i, ARRAY['desktop', 'mobile', 'tablet', 'ctv'],
                                                     pg_temp.rint('camp.ndev', i, 1, 4)::int)),
                   'audiences', jsonb_build_array(
                       jsonb_build_object('id', 'aud-' || pg_temp.rint('camp.aud1', i, 100, 999),
                                          'name', pg_temp.pick('camp.audn', i, ARRAY['In-market autos', 'Sports fans',
                                                               'Parents', 'Travel intenders', 'Foodies', 'Gamers']),
                                          'weight', round(pg_temp.rnd('camp.audw', i)::numeric, 2))),
                   'frequency_cap', CASE WHEN pg_temp.rnd('camp.nocap', i) < 0.3 THEN NULL
                                         ELSE jsonb_build_object('impressions', pg_temp.rint('camp.cap', i, 2, 12),
                                                                 'per', pg_temp.pick('camp.per', i, ARRAY['day', 'week'])) END)
               END AS targeting,
               CASE WHEN pg_temp.rnd('camp.legacy', i) < 0.6 THEN NULL
                    ELSE 'BK' || lpad(pg_temp.rint('camp.bk', i, 1, 999999)::text, 6, '0') END AS legacy,
               (date '2024-01-01' + s - pg_temp.rint('camp.lead', i, 3, 60)::int)::timestamp AT TIME ZONE 'UTC'
                   + date_trunc('second', pg_temp.rnd('camp.tod', i) * interval '1 day') AS created_at
          FROM generate_series(1, 800) AS i,
               LATERAL (SELECT pg_temp.rint('camp.start', i, 0, 700)::int AS s) AS st) AS c;

-- @step campaign_users
INSERT INTO campaign_users (campaign_id, user_id, role, added_at)
SELECT c.id,
       pg_temp.uid('user', 1 + (pg_temp.rint('cu.user', c.id, 0, 89) + k * 7) % 90),
       CASE WHEN k = 0 THEN 'owner' ELSE pg_temp.pick('cu.role', c.id * 10 + k, ARRAY['planner', 'buyer', 'analyst', 'approver']) END,
       c.created_at + k * interval '1 day' + date_trunc('second', pg_temp.rnd('cu.at', c.id * 10 + k) * interval '1 day')
  FROM campaigns c,
       generate_series(0, pg_temp.rint('cu.n', c.id, 0, 2)::int) AS k;

-- @step flights
INSERT INTO flights (id, campaign_id, name, start_date, end_date, budget, pacing, is_locked)
SELECT row_number() OVER (ORDER BY c.id, k),
       c.id,
       'Flight ' || k || ' of ' || n,
       c.start_date + (len * (k - 1) / n),
       c.start_date + (len * k / n) - CASE WHEN k < n THEN 1 ELSE 0 END,
       round(c.budget / n, 2),
       pg_temp.pick('fl.pacing', c.id * 10 + k, ARRAY['even', 'even', 'front', 'asap']),
       c.status IN ('completed', 'archived') OR pg_temp.rnd('fl.lock', c.id * 10 + k) < 0.05
  FROM campaigns c,
       LATERAL (SELECT pg_temp.rint('fl.n', c.id, 1, 3)::int AS n,
                       coalesce(c.end_date, c.start_date + 90) - c.start_date AS len) AS p,
       generate_series(1, p.n) AS k;

-- @step line_items
INSERT INTO line_items (id, campaign_id, flight_id, name, type, rate, rate_type, budget, units, start_date, end_date,
                        targeting, tags, created_at)
SELECT id, campaign_id, flight_id, name, type, rate, rate_type, budget,
       CASE rate_type WHEN 'flat' THEN NULL
                      WHEN 'cpm' THEN floor(budget / rate * 1000)::bigint
                      ELSE floor(budget / rate)::bigint END,
       start_date, end_date, targeting, tags, created_at
  FROM (SELECT row_number() OVER (ORDER BY f.id, k) AS id,
               f.campaign_id,
               CASE WHEN pg_temp.rnd('li.noflight', f.id * 10 + k) < 0.05 THEN NULL ELSE f.id END AS flight_id,
               t.type || ' - ' || pg_temp.pick('li.name', f.id * 10 + k, ARRAY['Prospecting', 'Retargeting', 'Contextual',
                                                    'Lookalike', 'Sponsorship', 'Run of Network', 'Premium PMP']) AS name,
               t.type::line_item_type AS type,
               round((CASE rt.rate_type WHEN 'cpm' THEN 2 + pg_temp.rnd('li.rate', f.id * 10 + k) * 33
                                        WHEN 'cpc' THEN 0.2 + pg_temp.rnd('li.rate', f.id * 10 + k) * 3.8
                                        WHEN 'cpv' THEN 0.01 + pg_temp.rnd('li.rate', f.id * 10 + k) * 0.19
                                        ELSE 500 + pg_temp.rnd('li.rate', f.id * 10 + k) * 19500 END)::numeric, 4) AS rate,
               rt.rate_type,
               round(f.budget * (0.2 + pg_temp.rnd('li.share', f.id * 10 + k) * 0.5)::numeric, 2) AS budget,
               f.start_date,
               f.end_date,
               jsonb_build_object('inventory', jsonb_build_object(
                                      'deals', CASE WHEN pg_temp.rnd('li.deal', f.id * 10 + k) < 0.7 THEN '[]'::jsonb
                                                    ELSE jsonb_build_array('PMP-' || pg_temp.rint('li.dealid', f.id * 10 + k, 1000, 9999)) END,
                                      'brand_safety', pg_temp.pick('li.bs', f.id * 10 + k, ARRAY['standard', 'strict', 'custom'])),
                                  'dayparting', CASE WHEN pg_temp.rnd('li.dp', f.id * 10 + k) < 0.6 THEN NULL
                                                     ELSE jsonb_build_object('days', to_jsonb(ARRAY['mon', 'tue', 'wed', 'thu', 'fri']),
                                                                             'hours', to_jsonb(ARRAY[7, 8, 9, 17, 18, 19, 20])) END,
                                  'bid', jsonb_build_object('strategy', pg_temp.pick('li.bid', f.id * 10 + k, ARRAY['fixed', 'target_cpa', 'max_reach']),
                                                            'max_cpm', round((5 + pg_temp.rnd('li.max', f.id * 10 + k) * 40)::numeric, 2))) AS targeting,
               CASE WHEN pg_temp.rnd('li.notags', f.id * 10 + k) < 0.3 THEN NULL
                    ELSE pg_temp.picks('li.tags', f.id * 10 + k, ARRAY['test', 'always-on', 'hero', 'tentpole', 'bonus'],
                                       pg_temp.rint('li.ntags', f.id * 10 + k, 0, 2)::int) END AS tags,
               c.created_at + pg_temp.rint('li.created', f.id * 10 + k, 0, 10) * interval '1 day' AS created_at
          FROM flights f
          JOIN campaigns c ON c.id = f.campaign_id,
               generate_series(1, pg_temp.rint('li.n', f.id, 1, 4)::int) AS k,
               LATERAL (SELECT pg_temp.pick('li.type', f.id * 10 + k, ARRAY['display', 'display', 'display', 'video', 'video',
                                            'audio', 'ctv', 'social', 'social', 'search', 'dooh']) AS type) AS t,
               LATERAL (SELECT CASE WHEN t.type = 'search' THEN 'cpc'
                                    WHEN t.type IN ('video', 'ctv') AND pg_temp.rnd('li.cpv', f.id * 10 + k) < 0.4 THEN 'cpv'
                                    WHEN t.type = 'dooh' OR pg_temp.rnd('li.flat', f.id * 10 + k) < 0.05 THEN 'flat'
                                    ELSE 'cpm' END AS rate_type) AS rt) AS li;

-- @step creatives
INSERT INTO creatives (id, advertiser_id, name, format, width, height, duration_seconds, click_url, asset_id, tags,
                       approved, created_at)
SELECT i, adv, name, format::creative_format,
       CASE format WHEN 'banner' THEN split_part(size, 'x', 1)::int WHEN 'html5' THEN split_part(size, 'x', 1)::int
                   WHEN 'video' THEN 1920 END,
       CASE format WHEN 'banner' THEN split_part(size, 'x', 2)::int WHEN 'html5' THEN split_part(size, 'x', 2)::int
                   WHEN 'video' THEN 1080 END,
       CASE format WHEN 'video' THEN pg_temp.pick('cr.dur', i, ARRAY['6', '15', '15', '30'])::numeric(6,2)
                   WHEN 'audio' THEN pg_temp.pick('cr.dur', i, ARRAY['15', '30', '30', '60'])::numeric(6,2) END,
       CASE WHEN format = 'audio' OR pg_temp.rnd('cr.nourl', i) < 0.05 THEN NULL
            ELSE 'https://www.brand' || adv || '.example/landing?utm_source=mediatool&cr=' || i END,
       pg_temp.uid('cr.asset', i),
       pg_temp.picks('cr.tags', i, ARRAY['hero', 'cutdown', 'localized', 'evergreen', 'promo'], pg_temp.rint('cr.ntags', i, 0, 2)::int),
       pg_temp.rnd('cr.approved', i) < 0.85,
       pg_temp.ts('cr.created', i, '2023-06-01 00:00:00+00', 800)
  FROM (SELECT i,
               1 + (i - 1) % 150 AS adv,
               pg_temp.pick('cr.format', i, ARRAY['banner', 'banner', 'banner', 'video', 'video', 'native', 'audio', 'html5']) AS format,
               pg_temp.pick('cr.size', i, ARRAY['300x250', '728x90', '160x600', '320x50', '300x600']) AS size,
               pg_temp.pick('cr.concept', i, ARRAY['Hero', 'Offer', 'Testimonial', 'Product', 'Teaser'])
                   || ' v' || pg_temp.rint('cr.v', i, 1, 5) AS name
          FROM generate_series(1, 900) AS i) AS cr;

-- @step media_buys
INSERT INTO media_buys (id, line_item_id, platform_id, creative_id, status, external_id, planned_spend, booked_at,
                        settings, created_at)
SELECT id, line_item_id, platform_id, creative_id, status::buy_status,
       CASE WHEN status IN ('planned', 'cancelled') THEN NULL
            ELSE upper(left(platform_code, 3)) || '-' || substr(md5(current_setting('sample.seed') || '/mb/' || id), 1, 12) END,
       planned_spend,
       CASE WHEN status = 'planned' THEN NULL ELSE created_at + pg_temp.rint('mb.book', id, 1, 240) * interval '1 hour' END,
       settings, created_at
  FROM (SELECT row_number() OVER (ORDER BY li.id, k) AS id,
               li.id AS line_item_id,
               pc.ids[1 + floor(pg_temp.rnd('mb.platform', li.id * 10 + k) * cardinality(pc.ids))::int] AS platform_id,
               pc.codes[1 + floor(pg_temp.rnd('mb.platform', li.id * 10 + k) * cardinality(pc.ids))::int] AS platform_code,
               CASE WHEN pg_temp.rnd('mb.nocr', li.id * 10 + k) < 0.1 THEN NULL
                    ELSE ac.ids[1 + floor(pg_temp.rnd('mb.cr', li.id * 10 + k) * cardinality(ac.ids))::int] END AS creative_id,
               CASE WHEN li.end_date < date '2025-09-30' THEN
                        (CASE WHEN pg_temp.rnd('mb.cancel', li.id * 10 + k) < 0.05 THEN 'cancelled' ELSE 'ended' END)
                    WHEN li.start_date > date '2025-09-30' THEN
                        (CASE WHEN pg_temp.rnd('mb.booked', li.id * 10 + k) < 0.5 THEN 'planned' ELSE 'booked' END)
                    ELSE 'live' END AS status,
               round(li.budget * (0.3 + pg_temp.rnd('mb.share', li.id * 10 + k) * 0.6)::numeric, 2) AS planned_spend,
               CASE WHEN pg_temp.rnd('mb.nosettings', li.id * 10 + k) < 0.2 THEN NULL
                    ELSE jsonb_build_object('optimization', jsonb_build_object(
                                                'goal', pg_temp.pick('mb.goal', li.id * 10 + k, ARRAY['ctr', 'cpa', 'viewability', 'completion']),
                                                'auto_bid', pg_temp.rnd('mb.auto', li.id * 10 + k) < 0.5),
                                            'tracking', jsonb_build_object(
                                                'pixels', to_jsonb(ARRAY['px-' || pg_temp.rint('mb.px', li.id * 10 + k, 10000, 99999)]),
                                                'verification', pg_temp.pick('mb.ver', li.id * 10 + k, ARRAY['ias', 'doubleverify', 'moat', 'none'])))
               END AS settings,
               li.created_at + pg_temp.rint('mb.created', li.id * 10 + k, 0, 72) * interval '1 hour' AS created_at
          FROM line_items li
          JOIN campaigns c ON c.id = li.campaign_id
          JOIN (SELECT channel, array_agg(id ORDER BY id) AS ids, array_agg(code ORDER BY id) AS codes
                  FROM platforms GROUP BY channel) AS pc ON pc.channel = li.type
          LEFT JOIN (SELECT advertiser_id, array_agg(id ORDER BY id) AS ids
                       FROM creatives GROUP BY advertiser_id) AS ac ON ac.advertiser_id = c.advertiser_id,
               generate_series(1, pg_temp.rint('mb.n', li.id, 1, 2)::int) AS k) AS mb;

-- @step daily_metrics
-- Only buys that ran report metrics. Row i is day (i / buys) of the (i % buys + 1)-th of them:
-- unique by construction, so any row count works.
INSERT INTO daily_metrics (media_buy_id, metric_date, impressions, clicks, conversions, spend, video_completions,
                           viewability_rate)
SELECT m.media_buy_id, m.metric_date, m.impressions, m.clicks,
       floor(m.clicks * pg_temp.rnd('dm.cvr', m.i) * 0.08)::int,
       round((m.impressions / 1000.0 * (1 + pg_temp.rnd('dm.cpm', m.i) * 24))::numeric, 2),
       CASE WHEN m.type IN ('video', 'ctv') THEN floor(m.impressions * (0.5 + pg_temp.rnd('dm.vcr', m.i) * 0.45))::int END,
       CASE WHEN m.type IN ('audio', 'search') OR pg_temp.rnd('dm.noview', m.i) < 0.08 THEN NULL
            ELSE round((0.4 + pg_temp.rnd('dm.view', m.i) * 0.55)::numeric, 4) END
  FROM (SELECT g.i, b.id AS media_buy_id, li.type,
               li.start_date + (g.i / n.buys)::int AS metric_date,
               floor(200 + pg_temp.rnd('dm.imp', g.i) ^ 2 * 150000)::bigint AS impressions,
               floor((200 + pg_temp.rnd('dm.imp', g.i) ^ 2 * 150000) * (0.0005 + pg_temp.rnd('dm.ctr', g.i) * 0.015))::int AS clicks
          FROM (SELECT count(*) AS buys FROM media_buys WHERE status IN ('live', 'ended')) AS n
         CROSS JOIN generate_series(0, current_setting('sample.metrics_rows')::bigint - 1) AS g(i)
          JOIN (SELECT id, line_item_id, row_number() OVER (ORDER BY id) AS rn
                  FROM media_buys WHERE status IN ('live', 'ended')) AS b ON b.rn = g.i % n.buys + 1
          JOIN line_items li ON li.id = b.line_item_id) AS m;

-- @step platform_sync_log
-- Connectors retry: every 250th run is logged twice, identical rows a key-less table allows.
INSERT INTO platform_sync_log (platform_id, synced_at, status, rows_synced, message, payload)
SELECT platform_id, synced_at, status,
       CASE WHEN status = 'failed' THEN NULL ELSE pg_temp.rint('sl.rows', i, 0, 50000)::int END,
       CASE status WHEN 'failed' THEN pg_temp.pick('sl.err', i, ARRAY['HTTP 429 Too Many Requests', 'HTTP 503 from reporting API',
                                                               'token expired', 'timeout after 300s'])
                   WHEN 'partial' THEN 'some reports were not ready' END,
       CASE WHEN pg_temp.rnd('sl.nopayload', i) < 0.3 THEN NULL
            ELSE jsonb_build_object('report', pg_temp.pick('sl.rep', i, ARRAY['delivery', 'conversions', 'reach']),
                                    'window', jsonb_build_object('from', (synced_at - interval '1 day')::date,
                                                                 'to', synced_at::date)) END
  FROM (SELECT i, 1 + (i - 1) % 14 AS platform_id,
               timestamptz '2025-06-01 00:00:00+00' + (i - 1) * interval '53 minutes' AS synced_at,
               pg_temp.pick('sl.status', i, ARRAY['ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'partial', 'failed']) AS status
          FROM generate_series(1, 2500) AS i,
               LATERAL generate_series(1, CASE WHEN i % 250 = 0 THEN 2 ELSE 1 END) AS dup) AS s;

-- @step sequences
-- Explicit ids were inserted; the identity sequences must continue after them.
SELECT setval(pg_get_serial_sequence('agencies', 'id'), (SELECT max(id) FROM agencies));
SELECT setval(pg_get_serial_sequence('advertisers', 'id'), (SELECT max(id) FROM advertisers));
SELECT setval(pg_get_serial_sequence('campaigns', 'id'), (SELECT max(id) FROM campaigns));
SELECT setval(pg_get_serial_sequence('flights', 'id'), (SELECT max(id) FROM flights));
SELECT setval(pg_get_serial_sequence('line_items', 'id'), (SELECT max(id) FROM line_items));
SELECT setval(pg_get_serial_sequence('creatives', 'id'), (SELECT max(id) FROM creatives));
SELECT setval(pg_get_serial_sequence('media_buys', 'id'), (SELECT max(id) FROM media_buys));
ANALYZE;
