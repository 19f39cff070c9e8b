"""The SQLite schema: its numbered migrations from an empty file, each run in the transaction that sets
`PRAGMA user_version` to its number. sqlite.py applies them; postgresql_schema.py holds the same steps in
PostgreSQL's dialect."""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: entries, issues, seed cache
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE entries (
        id TEXT PRIMARY KEY,
        source TEXT NOT NULL,
        line INTEGER NOT NULL,
        content_hash TEXT NOT NULL,
        data TEXT NOT NULL,
        first_seen TEXT NOT NULL,
        revised TEXT
    );
    CREATE TABLE issues (
        number INTEGER PRIMARY KEY,
        published TEXT NOT NULL,
        slot TEXT UNIQUE,
        created TEXT NOT NULL
    );
    CREATE TABLE issue_entries (
        issue INTEGER NOT NULL REFERENCES issues(number),
        position INTEGER NOT NULL,
        entry_id TEXT NOT NULL UNIQUE REFERENCES entries(id),
        PRIMARY KEY (issue, position)
    );
    CREATE TABLE seed_files (
        path TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        scan BLOB NOT NULL
    );
    """,
    # 2: subscribers and the delivery ledger
    """
    CREATE TABLE subscribers (
        id INTEGER PRIMARY KEY,
        email TEXT NOT NULL,
        email_key TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL DEFAULT '',
        active INTEGER NOT NULL DEFAULT 1,
        created TEXT NOT NULL,
        unsubscribed TEXT
    );
    CREATE TABLE deliveries (
        issue INTEGER NOT NULL REFERENCES issues(number),
        subscriber INTEGER NOT NULL REFERENCES subscribers(id),
        status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed', 'deferred', 'unknown')),
        attempts INTEGER NOT NULL DEFAULT 0,
        detail TEXT NOT NULL DEFAULT '',
        message_id TEXT,
        updated TEXT NOT NULL,
        PRIMARY KEY (issue, subscriber)
    );
    CREATE INDEX deliveries_status ON deliveries (issue, status);
    """,
    # 3: incremental seed scanning
    """
    ALTER TABLE seed_files ADD COLUMN settled INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX entries_source ON entries (source);
    """,
    # 4: a subscriber's life cycle (status instead of a flag), consent record, per-subscription token nonce,
    #    soft-bounce streak, topics; bounced/complained ledger outcomes; a suppression list of address hashes
    """
    ALTER TABLE subscribers ADD COLUMN status TEXT NOT NULL DEFAULT 'active'
        CHECK (status IN ('pending', 'active', 'paused', 'unsubscribed', 'bounced', 'complained'));
    UPDATE subscribers SET status = CASE WHEN active = 1 THEN 'active' ELSE 'unsubscribed' END;
    ALTER TABLE subscribers DROP COLUMN active;
    ALTER TABLE subscribers ADD COLUMN status_changed TEXT;
    ALTER TABLE subscribers ADD COLUMN status_detail TEXT NOT NULL DEFAULT '';
    ALTER TABLE subscribers ADD COLUMN source TEXT NOT NULL DEFAULT 'cli'
        CHECK (source IN ('form', 'cli', 'import'));
    ALTER TABLE subscribers ADD COLUMN signup_ip TEXT;
    ALTER TABLE subscribers ADD COLUMN confirmed TEXT;
    ALTER TABLE subscribers ADD COLUMN token_nonce TEXT NOT NULL DEFAULT '';
    ALTER TABLE subscribers ADD COLUMN soft_bounces INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE subscribers ADD COLUMN topics TEXT NOT NULL DEFAULT '';
    UPDATE subscribers SET status_changed = COALESCE(unsubscribed, created), token_nonce = lower(hex(randomblob(8)));
    ALTER TABLE subscribers DROP COLUMN unsubscribed;
    CREATE INDEX subscribers_status ON subscribers (status);
    CREATE TABLE deliveries_v4 (
        issue INTEGER NOT NULL REFERENCES issues(number),
        subscriber INTEGER NOT NULL REFERENCES subscribers(id) ON DELETE CASCADE,
        status TEXT NOT NULL CHECK (status IN
            ('pending', 'sent', 'failed', 'deferred', 'unknown', 'bounced', 'complained')),
        attempts INTEGER NOT NULL DEFAULT 0,
        detail TEXT NOT NULL DEFAULT '',
        message_id TEXT,
        updated TEXT NOT NULL,
        PRIMARY KEY (issue, subscriber)
    );
    INSERT INTO deliveries_v4 SELECT issue, subscriber, status, attempts, detail, message_id, updated FROM deliveries;
    DROP TABLE deliveries;
    ALTER TABLE deliveries_v4 RENAME TO deliveries;
    CREATE INDEX deliveries_status ON deliveries (issue, status);
    CREATE TABLE suppressions (
        email_hash TEXT PRIMARY KEY,
        reason TEXT NOT NULL,
        created TEXT NOT NULL
    );
    """,
    # 5: which published papers belong to which topic (derived from the topic rules at render time; `rebuild`
    #    derives it again), so a topic's pages and feeds are found without reading the whole archive
    """
    CREATE TABLE paper_topics (
        topic TEXT NOT NULL,
        issue INTEGER NOT NULL REFERENCES issues(number),
        position INTEGER NOT NULL,
        PRIMARY KEY (topic, issue, position)
    ) WITHOUT ROWID;
    CREATE INDEX paper_topics_issue ON paper_topics (issue);
    """,
    # 6 (bounces): how bad a failed delivery was for the address (hard/soft, from a refusal or a DSN), and every
    #   imported bounce/complaint report by its identity, so that importing one twice changes nothing
    """
    ALTER TABLE deliveries ADD COLUMN bounce TEXT CHECK (bounce IN ('hard', 'soft'));
    CREATE TABLE bounce_reports (
        key TEXT PRIMARY KEY,
        imported TEXT NOT NULL,
        outcome TEXT NOT NULL
    );
    """,
    # 7 (signup): events counted by the web app's rate limits (per client IP, per address hash), shared by every
    #    process serving the same state; rows older than the longest window are pruned as new ones come in
    """
    CREATE TABLE rate_events (
        bucket TEXT NOT NULL,
        at TEXT NOT NULL
    );
    CREATE INDEX rate_events_bucket ON rate_events (bucket, at);
    """,
    # 8 (backlog): the queue of waiting papers (seen, not published: their text is not stored yet) in seed order,
    #    so that the next issue is read from the head of it whatever the backlog and the archive
    """
    UPDATE entries SET data = '' WHERE NOT EXISTS (SELECT 1 FROM issue_entries ie WHERE ie.entry_id = entries.id);
    CREATE INDEX entries_waiting ON entries (source, line) WHERE data = '';
    """,
    # 9 (email topics): a 'skipped' ledger outcome, for a subscriber whose chosen topics have no paper in an issue
    #   (no mail; the row keeps them from being mailed that issue later). SQLite cannot change a CHECK in place.
    """
    CREATE TABLE deliveries_v9 (
        issue INTEGER NOT NULL REFERENCES issues(number),
        subscriber INTEGER NOT NULL REFERENCES subscribers(id) ON DELETE CASCADE,
        status TEXT NOT NULL CHECK (status IN
            ('pending', 'sent', 'failed', 'deferred', 'unknown', 'bounced', 'complained', 'skipped')),
        attempts INTEGER NOT NULL DEFAULT 0,
        detail TEXT NOT NULL DEFAULT '',
        message_id TEXT,
        updated TEXT NOT NULL,
        bounce TEXT CHECK (bounce IN ('hard', 'soft')),
        PRIMARY KEY (issue, subscriber)
    );
    INSERT INTO deliveries_v9 (issue, subscriber, status, attempts, detail, message_id, updated, bounce)
        SELECT issue, subscriber, status, attempts, detail, message_id, updated, bounce FROM deliveries;
    DROP TABLE deliveries;
    ALTER TABLE deliveries_v9 RENAME TO deliveries;
    CREATE INDEX deliveries_status ON deliveries (issue, status);
    """,
    # 10: `seed_files.settled` (migration 3) has not been read since the waiting queue (8) replaced it
    """
    ALTER TABLE seed_files DROP COLUMN settled;
    """,
    # 11 (bounce): the trail of every subscriber status change (from, to, what made it, when, why), written in the
    #    transaction of the change; it goes with its subscriber (erasure). `source_detail` names an import's
    #    platform in the consent record ("substack" -> "import:substack").
    """
    CREATE TABLE status_changes (
        id INTEGER PRIMARY KEY,
        subscriber INTEGER NOT NULL REFERENCES subscribers(id) ON DELETE CASCADE,
        old_status TEXT,
        new_status TEXT NOT NULL,
        source TEXT NOT NULL,
        at TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX status_changes_subscriber ON status_changes (subscriber, id);
    ALTER TABLE subscribers ADD COLUMN source_detail TEXT NOT NULL DEFAULT '';
    """,
    # 12: every signup batch forgets rate-limit events older than the longest window (`at < ?`); without an index
    #    on `at` that scanned the whole table: 63 ms a batch with the 1,000,000 events of a sustained flood,
    #    0.015 ms with it
    """
    CREATE INDEX rate_events_at ON rate_events (at);
    """,
)
