"""The delivery ledger: one row per (issue, subscriber) saying whether that mail is pending, sent, failed,
deferred, unknown, skipped, bounced or complained about; the bounce reports already imported; and the counts
`digest status` and the bounce thresholds read from it.

A row is claimed ('pending') before its mail goes out and settled after, so a crashed sender leaves 'pending'
rows that `expire_pending` turns into 'unknown' (never mailed twice without being asked to).
"""

from __future__ import annotations

from datetime import datetime

from digest.model import SUPPRESSED, Delivery, DeliveryStatus
from digest.store._subscribers import subscriber_from_row
from digest.store.backend import Connection

#: Statuses of a delivery whose mail went out (or may have).
_FINISHED = "'sent', 'failed', 'bounced', 'complained'"


class LedgerMixin:
    """The queries about deliveries and bounces."""

    _conn: Connection

    def delivery_statuses(self, issue: int) -> dict[int, DeliveryStatus]:
        """subscriber id -> ledger status for one issue."""
        rows = self._conn.execute("SELECT subscriber, status FROM deliveries WHERE issue = ?", (issue,))
        return {int(r["subscriber"]): DeliveryStatus(r["status"]) for r in rows}

    def claim_delivery(
        self, issue: int, subscriber_id: int, message_id: str, now: datetime, *, retry_unknown: bool = False
    ) -> bool:
        """Mark (issue, subscriber) 'pending' if the subscriber is still active and the row is new or 'deferred'
        (or 'unknown' with `retry_unknown`); False when it must not be sent."""
        again = ("deferred", "unknown") if retry_unknown else ("deferred",)
        cursor = self._conn.execute(
            "INSERT INTO deliveries (issue, subscriber, status, attempts, detail, message_id, updated)"
            " SELECT ?, id, 'pending', 0, '', ?, ? FROM subscribers WHERE id = ? AND status = 'active'"
            " ON CONFLICT(issue, subscriber) DO UPDATE SET status = 'pending', message_id = excluded.message_id,"
            f" updated = excluded.updated WHERE deliveries.status IN ({','.join('?' * len(again))})",
            (issue, message_id, now.isoformat(), subscriber_id, *again),
        )
        return cursor.rowcount > 0

    def skip_delivery(self, issue: int, subscriber_id: int, detail: str, now: datetime) -> bool:
        """Record that (issue, subscriber) is not mailed ('skipped'), if the subscriber is active and has no row yet
        or a 'deferred' one; False when a row already says otherwise."""
        cursor = self._conn.execute(
            "INSERT INTO deliveries (issue, subscriber, status, attempts, detail, updated)"
            " SELECT ?, id, 'skipped', 0, ?, ? FROM subscribers WHERE id = ? AND status = 'active'"
            " ON CONFLICT(issue, subscriber) DO UPDATE SET status = 'skipped', detail = excluded.detail,"
            " updated = excluded.updated WHERE deliveries.status = 'deferred'",
            (issue, detail, now.isoformat(), subscriber_id),
        )
        return cursor.rowcount > 0

    def record_delivery(
        self,
        issue: int,
        subscriber_id: int,
        status: DeliveryStatus,
        detail: str,
        now: datetime,
        attempts: int = 1,
        *,
        bounce: str | None = None,
    ) -> None:
        """Record the outcome of sending (issue, subscriber); `bounce` 'hard'/'soft' when the server refused it."""
        self._conn.execute(
            "UPDATE deliveries SET status = ?, detail = ?, attempts = attempts + ?, updated = ?, bounce = ?"
            " WHERE issue = ? AND subscriber = ?",
            (status.value, detail, attempts, now.isoformat(), bounce, issue, subscriber_id),
        )

    def expire_pending(self, now: datetime) -> int:
        """Turn 'pending' rows left by a crashed sender into 'unknown': the message may be on its way.

        Call only while holding the writer lock, when no sender can be running."""
        cursor = self._conn.execute(
            "UPDATE deliveries SET status = 'unknown', updated = ?,"
            " detail = 'the sender stopped while this message was being sent; it may have been delivered'"
            " WHERE status = 'pending'",
            (now.isoformat(),),
        )
        return cursor.rowcount

    def delivery_counts(self, issue: int) -> dict[DeliveryStatus, int]:
        """How many ledger rows of one issue are in each status."""
        rows = self._conn.execute(
            "SELECT status, COUNT(*) AS n FROM deliveries WHERE issue = ? GROUP BY status", (issue,)
        ).fetchall()
        counts = dict.fromkeys(DeliveryStatus, 0)
        counts.update({DeliveryStatus(r["status"]): int(r["n"]) for r in rows})
        return counts

    def deliveries(self, issue: int, status: DeliveryStatus | None = None) -> list[Delivery]:
        """Ledger rows of one issue (optionally only one status), with their subscribers."""
        sql = (
            "SELECT d.status AS delivery_status, d.attempts, d.detail,"
            " s.id, s.email, s.name, s.status, s.token_nonce"
            " FROM deliveries d JOIN subscribers s ON s.id = d.subscriber WHERE d.issue = ?"
        )
        params: list[object] = [issue]
        if status is not None:
            sql += " AND d.status = ?"
            params.append(status.value)
        rows = self._conn.execute(sql + " ORDER BY s.id", params).fetchall()
        return [
            Delivery(
                issue=issue,
                subscriber=subscriber_from_row(r),
                status=DeliveryStatus(r["delivery_status"]),
                attempts=int(r["attempts"]),
                detail=r["detail"],
            )
            for r in rows
        ]

    def subscriber_deliveries(self, subscriber_id: int) -> list[tuple[int, DeliveryStatus, int, str, datetime]]:
        """(issue, status, attempts, detail, updated) of every delivery to one subscriber, oldest issue first."""
        rows = self._conn.execute(
            "SELECT issue, status, attempts, detail, updated FROM deliveries WHERE subscriber = ? ORDER BY issue",
            (subscriber_id,),
        ).fetchall()
        return [
            (
                int(r["issue"]),
                DeliveryStatus(r["status"]),
                int(r["attempts"]),
                str(r["detail"]),
                datetime.fromisoformat(r["updated"]),
            )
            for r in rows
        ]

    def mailed_issues(self, limit: int) -> list[int]:
        """The newest issues that have deliveries on the ledger, newest first."""
        rows = self._conn.execute(
            "SELECT DISTINCT issue FROM deliveries ORDER BY issue DESC LIMIT ?", (limit,)
        ).fetchall()
        return [int(r["issue"]) for r in rows]

    # --- bounces and complaints --------------------------------------------------------------------

    def record_bounce(
        self, issue: int, subscriber_id: int, status: DeliveryStatus, bounce: str | None, detail: str, now: datetime
    ) -> bool:
        """Mark a delivery bounced or complained about after the fact; a complaint is never overwritten by a
        bounce. False when the ledger has no such delivery."""
        keep = "" if status is DeliveryStatus.COMPLAINED else " AND status != 'complained'"
        cursor = self._conn.execute(
            "UPDATE deliveries SET status = ?, bounce = ?, detail = ?, updated = ? WHERE issue = ? AND subscriber = ?"
            + keep,
            (status.value, bounce, detail, now.isoformat(), issue, subscriber_id),
        )
        if cursor.rowcount:
            return True
        row = self._conn.execute(
            "SELECT 1 FROM deliveries WHERE issue = ? AND subscriber = ?", (issue, subscriber_id)
        ).fetchone()
        return row is not None

    def latest_delivery(self, subscriber_id: int) -> int | None:
        """The newest issue mailed to a subscriber (a message that went out, or may have): what a provider's event
        naming only the address is about."""
        row = self._conn.execute(
            f"SELECT MAX(issue) AS issue FROM deliveries WHERE subscriber = ? AND status IN ({_FINISHED}, 'unknown')",
            (subscriber_id,),
        ).fetchone()
        return int(row["issue"]) if row is not None and row["issue"] is not None else None

    def soft_bounce_streak(self, subscriber_id: int) -> int:
        """How many of the subscriber's latest finished deliveries in a row were soft bounces, counting none
        recorded before the publisher last lifted a suppression (`subscribers unsuppress`: a fresh start); the
        count is also kept on the subscriber (`soft_bounces`)."""
        suppressed = sorted(s.value for s in SUPPRESSED)
        lifted = self._conn.execute(
            "SELECT at FROM status_changes WHERE subscriber = ? AND new_status = 'active'"
            f" AND old_status IN ({', '.join('?' * len(suppressed))}) ORDER BY id DESC LIMIT 1",
            (subscriber_id, *suppressed),
        ).fetchone()
        since = datetime.fromisoformat(lifted["at"]) if lifted else None
        rows = self._conn.execute(
            f"SELECT bounce, updated FROM deliveries WHERE subscriber = ? AND status IN ({_FINISHED})"
            " ORDER BY issue DESC",
            (subscriber_id,),
        )
        streak = 0
        for r in rows:
            if r["bounce"] != "soft" or (since is not None and datetime.fromisoformat(r["updated"]) <= since):
                break
            streak += 1
        self._conn.execute("UPDATE subscribers SET soft_bounces = ? WHERE id = ?", (streak, subscriber_id))
        return streak

    def report_outcome(self, key: str) -> str | None:
        """What importing this bounce/complaint report did, if it was imported before."""
        row = self._conn.execute("SELECT outcome FROM bounce_reports WHERE key = ?", (key,)).fetchone()
        return str(row["outcome"]) if row else None

    def record_report(self, key: str, outcome: str, now: datetime) -> None:
        """Remember an imported report (in the transaction that applied it)."""
        self._conn.execute(
            "INSERT INTO bounce_reports (key, imported, outcome) VALUES (?, ?, ?)", (key, now.isoformat(), outcome)
        )

    def bounce_counts(self, issue: int) -> tuple[int, int, int, int]:
        """(messages that went out, hard bounces, soft bounces, complaints) of one issue."""
        row = self._conn.execute(
            "SELECT COUNT(*) AS sent, COUNT(CASE WHEN bounce = 'hard' THEN 1 END) AS hard,"
            " COUNT(CASE WHEN bounce = 'soft' THEN 1 END) AS soft,"
            " COUNT(CASE WHEN status = 'complained' THEN 1 END) AS complained FROM deliveries"
            f" WHERE issue = ? AND status IN ({_FINISHED}, 'unknown')",
            (issue,),
        ).fetchone()
        return int(row["sent"]), int(row["hard"]), int(row["soft"]), int(row["complained"])
