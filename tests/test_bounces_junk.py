"""Junk at the bounce address (issue 16): what cannot be used is remembered, so the next import skips it with one
look-up; a message longer than `bounce_max_bytes` is not read past that; one import runs at a time; and a report is
known by its bytes, so a junk mail carrying a real report's Message-ID cannot stand in for it.
Through `digest bounces import` on a Maildir and on stdin, after a real `digest send` to aiosmtpd."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from digest.errors import BusyError
from digest.store import backend_for
from tests import test_send_cli
from tests.conftest import Workspace
from tests.mail_util import MailServer, smtp_server_fixture  # noqa: F401  (fixture)
from tests.test_bounces_cli import dsn_for, import_bounces, statuses
from tests.test_send_cli import add_subscribers

mail_ws = test_send_cli.mail_ws  # the fixture: issue 1 rendered, SMTP settings pointing at `smtp_server`

REAL_DSN_ID = "<20261204050425.A1A9816E08F@digest.test>"


def maildir(ws: Workspace) -> Path:
    box = ws.root / "Maildir"
    for sub in ("new", "cur", "tmp"):
        (box / sub).mkdir(parents=True, exist_ok=True)
    return box


def sender_of(server: MailServer, address: str) -> str:
    return next(m.mail_from for m in server.received if m.rcpt_tos == [address])


def test_junk_is_remembered_and_skipped_by_the_next_import(mail_ws: Workspace, smtp_server: MailServer) -> None:
    mail_ws.env["DIGEST_BOUNCE_MAX_BYTES"] = "20000"
    add_subscribers(mail_ws, 2)
    mail_ws.run("send")
    box = maildir(mail_ws)
    (box / "new" / "1.junk").write_bytes(b"Subject: hello\n\nnot a report at all\n")
    (box / "new" / "2.garbage").write_bytes(b"\x00\xff" * 50)
    # A real DSN that would suppress reader1, padded past the cap: it is not read, so it changes nothing.
    padded = dsn_for(sender_of(smtp_server, "reader1@example.org")) + b"x" * 30_000 + b"\n"
    (box / "new" / "3.huge").write_bytes(padded)
    (box / "new" / "4.good").write_bytes(dsn_for(sender_of(smtp_server, "reader0@example.org")))

    first = import_bounces(mail_ws, str(box))
    assert first.returncode == 1 and "Traceback" not in first.stderr
    assert "1.junk: not a bounce or complaint report" in first.stderr
    assert "2.garbage: not a bounce or complaint report" in first.stderr
    [huge] = [line for line in first.stderr.splitlines() if "3.huge" in line]
    assert huge.endswith("3.huge: larger than 20000 bytes (bounce_max_bytes): not read")
    assert "4.good: hard bounce: reader0@example.org" in first.stdout
    assert "1 report applied, 0 already imported, 3 skipped" in first.stderr
    assert statuses(mail_ws) == {"reader0@example.org": "bounced", "reader1@example.org": "active"}
    assert mail_ws.sql("SELECT COUNT(*) FROM bounce_reports") == [(4,)]  # every message, junk included

    second = import_bounces(mail_ws, str(box))
    assert second.returncode == 0, second.stderr
    assert "0 reports applied, 4 already imported, 0 skipped" in second.stderr
    assert "3.huge: already imported (larger than 20000 bytes" in second.stdout


def test_a_long_message_on_stdin_is_read_only_up_to_the_cap(mail_ws: Workspace) -> None:
    mail_ws.env["DIGEST_BOUNCE_MAX_BYTES"] = "10000"
    junk = b"Subject: spam\n\n" + b"spam " * 600_000  # 3 MB, taken whole from the pipe, read to 10001 bytes
    result = import_bounces(mail_ws, "-", data=junk)
    assert result.returncode == 1
    assert "<stdin>: larger than 10000 bytes (bounce_max_bytes): not read" in result.stderr
    again = import_bounces(mail_ws, "-", data=junk)
    assert again.returncode == 0 and "1 already imported" in again.stderr


def test_a_junk_mail_with_a_real_reports_message_id_does_not_stand_in_for_it(
    mail_ws: Workspace, smtp_server: MailServer
) -> None:
    add_subscribers(mail_ws, 2)
    mail_ws.run("send")
    real_dsn = dsn_for(sender_of(smtp_server, "reader1@example.org"), REAL_DSN_ID)
    # Anybody can mail the bounce address a harmless-looking report (a delay warning) with the real one's id.
    junk = real_dsn.replace(b"Action: failed", b"Action: delayed").replace(b"Subject: ", b"Subject: x")
    first = import_bounces(mail_ws, "-", data=junk)
    assert first.returncode == 0 and "nothing to do (a delay warning" in first.stdout
    real = import_bounces(mail_ws, "-", data=real_dsn)
    assert real.returncode == 0, real.stderr
    assert "hard bounce: reader1@example.org, issue 1: suppressed" in real.stdout
    assert statuses(mail_ws)["reader1@example.org"] == "bounced"


@pytest.mark.both_states
def test_one_import_at_a_time_and_a_send_does_not_block_it(mail_ws: Workspace) -> None:
    mail_ws.env["DIGEST_LOCK_TIMEOUT"] = "0.3"
    junk = b"Subject: hi\n\nnothing\n"
    backend = backend_for(mail_ws.state_location)
    # A first import (a Postfix pipe still handing over its message) holds the import lock while it reads.
    first = subprocess.Popen(
        [sys.executable, "-m", "digest", "bounces", "import", "-"],
        cwd=mail_ws.root,
        env=mail_ws.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait until it holds the lock
            try:
                with backend.writer_lock(0, "probe", name="bounces"):
                    pass
            except BusyError:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the first import never took the import lock")
        second = import_bounces(mail_ws, "-", data=junk)
        assert second.returncode == 75
        [line] = second.stderr.strip().splitlines()
        assert "another digest process" in line and "bounces import" in line and "try again later" in line
    finally:
        _out, err = first.communicate(junk, timeout=120)
    assert first.returncode == 1 and b"not a bounce or complaint report" in err
    assert mail_ws.sql("SELECT COUNT(*) FROM bounce_reports") == [(1,)]
    with backend.writer_lock(5, "send"):  # the writer lock (a long send) is another lock
        again = import_bounces(mail_ws, "-", data=junk)
    assert again.returncode == 0 and "1 already imported" in again.stderr
