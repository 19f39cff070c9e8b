"""The signup outbox of `digest serve`: confirmation mails (and "already subscribed" notes) sent after the answer,
by one thread per process over one reused SMTP connection, from a bounded in-memory queue.

The state is the record, the queue only a shortcut. A signup records the mail it owes in its own transaction
(digest.subscriptions.record_signup), so once the page is answered the mail is owed whatever happens next. The
queue takes it if it has room; a sweep of the state (at start, every `signup_mail_sweep` seconds, and as soon as a
full queue has room again) finds every mail owed that no queue holds: those of a burst beyond the bound, of a
process killed or stopped, of an SMTP server that was down.

Before sending, a batch of mails is claimed in one transaction (a conditional UPDATE per mail: of two processes,
one gets each); once sent they are forgotten in another. A claim whose process is gone (same host, its pid dead or
reused by us) or older than CLAIM_LEASE is owed again. So no mail is lost, and a mail is sent twice only when a
process dies between handing it to the SMTP server and recording that (at most one batch).
"""

from __future__ import annotations

import logging
import os
import queue
import secrets
import socket
import threading
import time
from collections.abc import Callable
from datetime import timedelta

from digest.errors import DeliveryError, DigestError
from digest.model import Subscriber
from digest.store import OwedMail
from digest.subscriptions import abandoned_claims, claim_signup_mails, finish_signup_mails, release_signup_mails
from digest.transport import Messenger, Outcome, make_messenger, send_notice
from digest.web.pages import Web

log = logging.getLogger("digest.web")

BATCH = 32  # mails claimed (and recorded sent) per transaction: two commits for up to this many mails
CLAIM_LEASE = timedelta(minutes=15)  # a claim older than this (its process on another host, silent) is void
RETRY_DELAYS = (1.0, 2.0, 5.0, 15.0, 60.0)  # waits after the SMTP server could not be used, then every minute
IDLE_CLOSE = 2.0  # seconds without mail before the SMTP connection is closed

#: Renders one owed mail for its subscriber: the message's bytes.
Render = Callable[[OwedMail, Subscriber], bytes]


class SignupOutbox:
    """The queue of signup mails of one `digest serve` process and the thread that sends them."""

    def __init__(self, web: Web, render: Render) -> None:
        self.web = web
        self.render = render
        self.sweep_every = web.settings.signup_mail_sweep
        self.owner = ""  # "<host> <pid> <random>", set when started (a web worker may be forked after this)
        self._queue: queue.Queue[OwedMail] = queue.Queue(maxsize=web.settings.signup_mail_queue)
        self._known: set[str] = set()  # keys queued or being sent here (a sweep does not queue them twice)
        self._lock = threading.Lock()
        self._overflowed = False  # mails were left to the sweep: look again as soon as the queue has room
        self._stopping = threading.Event()
        self._drain_until = 0.0
        self._given_back = 0  # claimed mails given back unsent when a stop ran out of time
        self._thread = threading.Thread(target=self._run, name="signup-outbox", daemon=True)

    # --- the web app's side -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start sending (the first thing the thread does is a sweep)."""
        self.owner = f"{socket.gethostname()} {os.getpid()} {secrets.token_hex(4)}"
        self._thread.start()

    def offer(self, mail: OwedMail) -> bool:
        """Queue a mail just recorded owed, without waiting; False when the queue is full (the sweep sends it)."""
        with self._lock:
            if mail.key in self._known:
                return True
            try:
                self._queue.put_nowait(mail)
            except queue.Full:
                self._overflowed = True
                return False
            self._known.add(mail.key)
            return True

    def stop(self, drain: float = 5.0) -> None:
        """Send what is queued for at most `drain` seconds, then stop; what is left stays owed in the state."""
        self._drain_until = time.monotonic() + drain
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(drain + self.web.settings.smtp.timeout + self.web.settings.web_db_wait + 5)
        left = self._queue.qsize() + self._given_back
        if left:
            log.info("stopped with %d signup mails owed: the next `digest serve` sends them", left)

    # --- the sending thread -------------------------------------------------------------------------------

    def _run(self) -> None:
        messenger: Messenger | None = None
        held: list[OwedMail] = []  # a batch that could not go (SMTP down): retried after a wait
        failures = 0
        next_sweep = 0.0  # at once: a killed process may have left mails owed
        idle_since = time.monotonic()
        try:
            while not self._done():
                now = time.monotonic()
                if now >= next_sweep or (self._overflowed and self._queue.empty() and not held):
                    next_sweep = time.monotonic() + self.sweep_every
                    try:
                        self._sweep()
                    except Exception:
                        log.exception("owed signup mails not looked for; trying again in %.0f s", self.sweep_every)
                batch = held or self._take(min(0.5, max(0.0, next_sweep - time.monotonic())))
                held = []
                if not batch:
                    if messenger is not None and time.monotonic() - idle_since > IDLE_CLOSE:
                        messenger.close()
                        messenger = None
                    continue
                if messenger is None:
                    messenger = make_messenger(self.web.settings)
                try:
                    messenger.open()
                except DeliveryError as exc:
                    held = batch
                    delay = RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)]
                    failures += 1
                    log.warning("signup mails wait (%d queued): %s; trying again in %.0f s", self._queued(), exc, delay)
                    if self._stopping.wait(delay):
                        break
                    continue
                failures = 0
                try:
                    self._send(messenger, batch)
                except Exception:  # a bug must not stop the sending: these mails stay owed for the next sweep
                    log.exception("signup mails not sent; the next sweep tries again")
                    self._forget(batch)
                    messenger.close()
                    messenger = None
                idle_since = time.monotonic()
        except Exception:
            log.exception("the signup outbox stopped; owed mails are sent by the next sweep or process")
        finally:
            if messenger is not None:
                messenger.close()

    def _done(self) -> bool:
        if not self._stopping.is_set():
            return False
        return self._queue.empty() or time.monotonic() >= self._drain_until

    def _queued(self) -> int:
        return self._queue.qsize()

    def _take(self, timeout: float) -> list[OwedMail]:
        """Up to BATCH queued mails, waiting at most `timeout` seconds for the first."""
        try:
            batch = [self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()]
        except queue.Empty:
            return []
        while len(batch) < BATCH:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _forget(self, mails: list[OwedMail]) -> None:
        with self._lock:
            self._known.difference_update(m.key for m in mails)

    def _send(self, messenger: Messenger, batch: list[OwedMail]) -> None:
        """Claim, send and record one batch (mails the server put off are owed again, for the next sweep)."""
        web = self.web
        try:
            with web.open_store() as store:
                claimed = claim_signup_mails(store, batch, self.owner, web.now())
        except DigestError as exc:
            log.warning("signup mails not claimed (%s): the next sweep tries again", exc)
            self._forget(batch)
            return
        done: list[OwedMail] = []
        retry: list[OwedMail] = []
        for mail, subscriber in claimed:
            if self._stopping.is_set() and time.monotonic() >= self._drain_until:
                retry.append(mail)  # out of time: given back, owed to the next process
                self._given_back += 1
                continue
            try:
                data = self.render(mail, subscriber)
            except Exception:
                log.exception("signup mail (%s) to subscriber %d cannot be made: dropped", mail.kind, subscriber.id)
                done.append(mail)
                continue
            result = send_notice(messenger, web.settings, subscriber.email, data)
            if result.outcome is Outcome.DEFERRED:
                retry.append(mail)
            else:
                done.append(mail)
            level = logging.INFO if result.outcome is Outcome.SENT else logging.WARNING
            log.log(level, "signup mail (%s) to subscriber %d: %s", mail.kind, subscriber.id, result.outcome.value)
            if result.outcome is not Outcome.SENT:
                log.log(level, "  %s", result.detail)
        try:
            with web.open_store() as store:
                finish_signup_mails(store, done, retry)
        except DigestError as exc:
            # Still claimed by this live process: a later sweep of another process (lease) or ours frees them.
            log.error("sent signup mails not recorded (%s): some may be sent again after %s", exc, CLAIM_LEASE)
        self._forget(batch)

    def _sweep(self) -> None:
        """Queue the mails owed that no queue holds, and free the claims of processes that are gone."""
        with self._lock:
            self._overflowed = False
        try:
            with self.web.open_store() as store:
                owed = store.owed_signup_mails()
                stale = abandoned_claims(owed, self.web.now(), CLAIM_LEASE, self._gone)
                if stale:
                    freed = release_signup_mails(store, stale)
                    log.info("%d signup mails claimed by stopped processes are owed again", freed)
                    owed = store.owed_signup_mails()
        except DigestError as exc:
            log.warning("owed signup mails not read (%s): trying again in %.0f s", exc, self.sweep_every)
            return
        waiting = [m for m in owed if not m.claimed]
        queued = sum(self.offer(m) for m in waiting if m.key not in self._known)
        if queued:
            log.info("%d owed signup mails found in the state", queued)

    def _gone(self, owner: str) -> bool:
        """Whether the process that claimed a mail has ended: on this host, its pid is dead, or is ours (a
        restarted container) under another token."""
        host, _, rest = owner.partition(" ")
        pid_text = rest.partition(" ")[0]
        if host != socket.gethostname() or not pid_text.isdigit() or owner == self.owner:
            return False
        pid = int(pid_text)
        if pid == os.getpid():
            return True
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
