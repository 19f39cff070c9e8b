"""`digest send` end to end: the CLI as a subprocess, a real SMTP server on 127.0.0.1, the ledger in the state file.

What a maintainer relies on: every active subscriber gets the issue exactly once, however often `send` is run or
killed; messages are well-formed for mail clients and Gmail; faults of the server end in the right ledger state.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from digest.store import Store
from digest.tokens import Purpose, read_token
from tests.conftest import Workspace
from tests.mail_util import MailServer, free_port, smtp_server_fixture  # noqa: F401  (fixture)

SECRET = "test-secret-key-0123456789abcdef"


@pytest.fixture
def mail_ws(workspace: Workspace, smtp_server: MailServer) -> Workspace:
    """A workspace with issue 1 rendered and SMTP settings pointing at the test server."""
    workspace.env.update(
        {
            "DIGEST_SMTP__HOST": "127.0.0.1",
            "DIGEST_SMTP__PORT": str(smtp_server.port),
            "DIGEST_SMTP__SECURITY": "none",
            "DIGEST_SMTP__TIMEOUT": "5",
            "DIGEST_FROM_ADDRESS": "论文周报 <digest@example.org>",
            "DIGEST_SEND_RETRIES": "2",
            "DIGEST_SEND_RETRY_DELAY": "0.05",
            "DIGEST_MAX_MESSAGES_PER_SECOND": "1000",
            "DIGEST_UNSUBSCRIBE_MAILTO": "leave@example.org",
        }
    )
    workspace.run("render", "--now", "2024-09-23T08:00:00+08:00")
    return workspace


def add_subscribers(ws: Workspace, count: int, *, prefix: str = "reader") -> list[str]:
    addresses = [f"{prefix}{i}@example.org" for i in range(count)]
    csv = ws.root / "people.csv"
    csv.write_text("email,name\n" + "".join(f"{a},Reader {i}\n" for i, a in enumerate(addresses)), encoding="utf-8")
    ws.run("subscribers", "import", str(csv))
    return addresses


def ledger(ws: Workspace, issue: int = 1) -> dict[str, tuple[str, str]]:
    rows = ws.sql(
        "SELECT s.email, d.status, d.detail FROM deliveries d JOIN subscribers s ON s.id = d.subscriber"
        " WHERE d.issue = ?",
        issue,
    )
    return {email: (status, detail) for email, status, detail in rows}


def html_part_as_transmitted(data: bytes) -> bytes:
    """The raw bytes of the text/html part's body, as they went over the wire."""
    start = data.index(b"Content-Type: text/html")
    body = data.index(b"\r\n\r\n", start) + 4
    end = data.index(b"\r\n--", body)
    return data[body:end]


@pytest.mark.both_states
def test_every_active_subscriber_gets_one_well_formed_message(mail_ws: Workspace, smtp_server: MailServer) -> None:
    readers = add_subscribers(mail_ws, 5)
    mail_ws.run("subscribers", "add", "Hostile@Example.org", "--name", "Mallory\r\nBcc: victim@example.net\n")
    mail_ws.run("subscribers", "add", "gone@example.org")
    mail_ws.run("subscribers", "remove", "gone@example.org")

    result = mail_ws.run("send")

    assert "6 sent, 0 failed, 0 deferred, 0 unknown, 0 skipped" in result.stdout
    assert smtp_server.recipients() == {a: 1 for a in [*readers, "hostile@example.org"]}
    assert smtp_server.to("gone@example.org") == []
    for received in smtp_server.received:
        head = received.data.split(b"\r\n\r\n", 1)[0]
        assert head.isascii(), "raw header bytes must stay 7-bit"
        assert all(len(line) <= 998 for line in received.data.split(b"\r\n"))
        assert len(html_part_as_transmitted(received.data)) < 102_000
        msg = received.message
        for name in ("From", "To", "Date", "Subject", "Message-ID", "List-Id", "List-Unsubscribe"):
            assert len(msg.get_all(name) or []) == 1, name
        assert msg["Bcc"] is None
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert str(msg["Subject"]) == "AI 论文周报 · 第 1 期 (2024-09-23)"
        assert msg["From"].addresses[0].display_name == "论文周报"
        assert msg.get_content_type() == "multipart/alternative"
        assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]

    hostile = smtp_server.to("hostile@example.org")[0].message
    assert hostile["To"].addresses[0].display_name == "Mallory Bcc: victim@example.net"
    assert hostile["To"].addresses[0].addr_spec == "Hostile@example.org"


@pytest.mark.both_states
def test_personal_unsubscribe_link_in_headers_and_both_parts(mail_ws: Workspace, smtp_server: MailServer) -> None:
    add_subscribers(mail_ws, 1)
    mail_ws.run("send")
    msg = smtp_server.to("reader0@example.org")[0].message
    https_link, mailto = [part.strip(" <>") for part in str(msg["List-Unsubscribe"]).split(",")]
    assert mailto.startswith("mailto:leave@example.org")
    token = parse_qs(urlsplit(https_link).query)["token"][0]
    with Store.open(mail_ws.state_location) as store:
        subscriber = store.subscriber("reader0@example.org")
    assert subscriber is not None and "reader0" not in https_link
    subject = read_token(SECRET, Purpose.UNSUBSCRIBE, https_link.split("?")[0], token, now=datetime.now(UTC))
    assert subject.matches(subscriber)
    text, html = (part.get_content() for part in msg.iter_parts())
    assert https_link in text and "%%UNSUBSCRIBE_URL%%" not in text
    assert https_link.replace("&", "&amp;") in html and "%%UNSUBSCRIBE_URL%%" not in html
    assert msg["Message-ID"].endswith("@digest.example.org>")


@pytest.mark.both_states
def test_second_send_sends_nothing_new(mail_ws: Workspace, smtp_server: MailServer) -> None:
    add_subscribers(mail_ws, 3)
    mail_ws.run("send")
    again = mail_ws.run("send")
    assert "0 sent" in again.stdout and "3 skipped" in again.stdout
    assert len(smtp_server.received) == 3
    add_subscribers(mail_ws, 4)  # one new reader joins: only they get the issue now
    mail_ws.run("send")
    assert smtp_server.recipients()["reader3@example.org"] == 1
    assert max(smtp_server.recipients().values()) == 1


@pytest.mark.both_states
def test_451_is_deferred_then_sent_by_a_later_run(mail_ws: Workspace, smtp_server: MailServer) -> None:
    add_subscribers(mail_ws, 4)
    smtp_server.temp_fail_after = 2  # the server is "busy" after two messages, for the rest of this run
    first = mail_ws.run("send")
    assert "2 sent, 0 failed, 2 deferred" in first.stdout
    states = ledger(mail_ws)
    deferred = sorted(a for a, (status, _) in states.items() if status == "deferred")
    assert len(deferred) == 2 and all("451" in states[a][1] for a in deferred)

    smtp_server.temp_fail_after = None
    second = mail_ws.run("send")
    assert "2 sent, 0 failed, 0 deferred, 0 unknown, 2 skipped" in second.stdout
    assert smtp_server.recipients() == {f"reader{i}@example.org": 1 for i in range(4)}


def test_451_is_retried_with_backoff_within_the_run(mail_ws: Workspace, smtp_server: MailServer) -> None:
    add_subscribers(mail_ws, 3)
    smtp_server.temp_fail_after = 0
    smtp_server.temp_failures = 2  # two 451s, then the server recovers
    result = mail_ws.run("send")
    assert "3 sent, 0 failed, 0 deferred" in result.stdout


def test_550_fails_one_recipient_with_the_server_reply_and_the_batch_goes_on(
    mail_ws: Workspace, smtp_server: MailServer
) -> None:
    add_subscribers(mail_ws, 4)
    smtp_server.reject = {"reader1@example.org"}
    result = mail_ws.run("send")
    assert "3 sent, 0 failed" in result.stdout and "1 bounced (suppressed)" in result.stdout
    status, detail = ledger(mail_ws)["reader1@example.org"]
    assert status == "bounced" and "550 5.1.1" in detail and "mailbox unavailable" in detail
    assert "reader1@example.org: bounced: RCPT TO: 550" in result.stderr
    smtp_server.reject = set()
    mail_ws.run("send")  # a permanent failure is not retried
    assert smtp_server.to("reader1@example.org") == []


@pytest.mark.both_states
def test_drop_after_data_is_unknown_and_only_resent_on_request(mail_ws: Workspace, smtp_server: MailServer) -> None:
    add_subscribers(mail_ws, 3)
    smtp_server.drop_after_data = {"reader1@example.org"}
    result = mail_ws.run("send")
    assert "2 sent, 0 failed, 0 deferred, 1 unknown" in result.stdout
    assert ledger(mail_ws)["reader1@example.org"][0] == "unknown"
    status = mail_ws.run("status").stdout
    assert "1 unknown" in status and "reader1@example.org" in status and "--retry-unknown" in status

    smtp_server.drop_after_data = set()
    mail_ws.run("send")
    assert len(smtp_server.to("reader1@example.org")) == 1  # not re-sent automatically
    mail_ws.run("send", "--retry-unknown")
    assert len(smtp_server.to("reader1@example.org")) == 2
    assert ledger(mail_ws)["reader1@example.org"][0] == "sent"
    first, second = (m.message["Message-ID"] for m in smtp_server.to("reader1@example.org"))
    assert first == second  # the same message again: clients can tell it is a duplicate
    assert max(n for a, n in smtp_server.recipients().items() if a != "reader1@example.org") == 1


def test_test_copy_and_dry_run_record_nothing(mail_ws: Workspace, smtp_server: MailServer) -> None:
    add_subscribers(mail_ws, 2)
    result = mail_ws.run("send", "--to", "me@example.org")
    assert "test copy sent to me@example.org" in result.stdout
    assert smtp_server.recipients() == {"me@example.org": 1}
    out = mail_ws.root / "eml"
    mail_ws.run("send", "--dry-run", str(out))
    files = sorted(out.glob("*.eml"))
    assert len(files) == 2 and b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in files[0].read_bytes()
    assert ledger(mail_ws) == {}
    mail_ws.run("send")
    assert smtp_server.recipients()["reader0@example.org"] == 1
    assert (
        smtp_server.to("me@example.org")[0].message["Message-ID"]
        != smtp_server.to("reader0@example.org")[0].message["Message-ID"]
    )


def test_errors_are_one_line_on_stderr_with_nonzero_exit(mail_ws: Workspace) -> None:
    add_subscribers(mail_ws, 1)
    no_issue = mail_ws.run("send", "--issue", "7", check=False)
    assert no_issue.returncode == 1 and "no such issue: 7" in no_issue.stderr

    mail_ws.env["DIGEST_SMTP__PORT"] = str(free_port())
    unreachable = mail_ws.run("send", check=False)
    assert unreachable.returncode == 1 and "cannot reach SMTP server 127.0.0.1" in unreachable.stderr
    assert ledger(mail_ws) == {}

    del mail_ws.env["DIGEST_SECRET_KEY"]
    no_secret = mail_ws.run("send", check=False)
    assert no_secret.returncode == 78 and "secret_key" in no_secret.stderr
    assert "Traceback" not in no_secret.stderr + unreachable.stderr + no_issue.stderr


def test_without_8bitmime_an_issue_too_big_when_encoded_is_refused_before_sending(
    mail_ws: Workspace, smtp_server: MailServer
) -> None:
    # The sample issue (57 KB of HTML) fits even base64-encoded; an issue of 40 long abstracts fills the HTML
    # budget (100 KB), which base64 would inflate past Gmail's clipping size.
    from tests.test_cli_render import paper

    long = "我们提出了一种新的方法，显著提升了模型在多项基准上的表现。" * 40
    seeds = "".join(paper(f"Paper {n}", f"论文 {n}", f"https://arxiv.org/abs/2409.{n:05d}", long) for n in range(40))
    mail_ws.add_seed("002_long.md", seeds)
    mail_ws.run("render", "--now", "2024-09-30T08:00:00+08:00")
    add_subscribers(mail_ws, 2)
    smtp_server.offer_8bitmime = False
    result = mail_ws.run("send", check=False)
    assert result.returncode == 1 and "over Gmail's clipping size" in result.stderr
    assert smtp_server.received == [] and ledger(mail_ws, 2) == {}


def test_hostile_title_and_subject_never_reach_a_header_line(mail_ws: Workspace, smtp_server: MailServer) -> None:
    add_subscribers(mail_ws, 1)
    mail_ws.env["DIGEST_TITLE"] = "Weekly\r\nBcc: all@example.net\r\n\r\n<b>body</b>"
    mail_ws.env["DIGEST_SUBJECT"] = "{title}\n{number}\x1b\u2028"
    refused = mail_ws.run("send", check=False)
    assert refused.returncode == 78 and "Traceback" not in refused.stderr
    assert "DIGEST_TITLE (environment): title: must be one line of text without control characters" in refused.stderr
    assert "DIGEST_SUBJECT (environment): subject: must be one line" in refused.stderr
    assert smtp_server.received == []


def _unsubscribed_addresses(ws: Workspace) -> set[str]:
    return {r[0] for r in ws.sql("SELECT email FROM subscribers WHERE status = 'unsubscribed'")}


@pytest.mark.both_states
@pytest.mark.slow
def test_kill_9_at_random_moments_never_duplicates_or_skips(mail_ws: Workspace, smtp_server: MailServer) -> None:
    readers = add_subscribers(mail_ws, 60)
    for gone in readers[::15]:
        mail_ws.run("subscribers", "remove", gone)
    active = set(readers) - set(readers[::15])
    smtp_server.delay = 0.01
    rng = random.Random()
    kills = 0
    for _ in range(10):
        proc = mail_ws.popen("send")
        target = len(smtp_server.received) + rng.randint(1, 8)  # kill after a random number of messages ...
        while len(smtp_server.received) < target and proc.poll() is None:
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.015))  # ... at a random point of the next one
        if proc.poll() is not None:
            break
        proc.kill()
        proc.communicate()
        kills += 1
    final = mail_ws.run("send")
    assert "0 deferred" in final.stdout
    states = ledger(mail_ws)
    got = smtp_server.recipients()
    unknown = {a for a, (status, _) in states.items() if status == "unknown"}
    print(f"{kills} kills, {len(unknown)} unknown, {sum(n > 1 for n in got.values())} duplicates")
    assert kills >= 3
    assert not (set(got) - active), "unsubscribed readers got nothing"
    assert {a for a, n in got.items() if n > 1} <= unknown, "duplicates only where the ledger says unknown"
    assert {a for a, (status, _) in states.items() if status == "sent"} | unknown == active, "nobody skipped"
    assert all(got[a] == 1 for a, (status, _) in states.items() if status == "sent")
    assert len(unknown) <= kills * 4  # at most two per connection (2) at each kill: on the wire, claimed ahead
    mail_ws.run("send", "--retry-unknown")
    got = smtp_server.recipients()
    assert set(got) == active and all(got[a] >= 1 for a in active)
    assert {a for a, n in got.items() if n > 1} <= unknown


@pytest.mark.slow
def test_sigterm_finishes_the_message_in_flight_and_exits_cleanly(mail_ws: Workspace, smtp_server: MailServer) -> None:
    add_subscribers(mail_ws, 40)
    smtp_server.delay = 0.05
    proc = mail_ws.popen("send")
    deadline = time.monotonic() + 10
    while len(smtp_server.received) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "stopping after the messages in flight" in err and "run `digest send` again" in err
    states = ledger(mail_ws)
    assert {status for status, _ in states.values()} == {"sent"}, "nothing left pending or unknown"
    assert len(states) == len(smtp_server.received) < 40
    mail_ws.run("send")
    assert smtp_server.recipients() == {f"reader{i}@example.org": 1 for i in range(40)}


@pytest.mark.both_states
def test_unsubscribe_link_works_against_digest_serve(mail_ws: Workspace, smtp_server: MailServer) -> None:
    """RFC 8058 one-click: POST `List-Unsubscribe=One-Click` to the header's URL; the next issue skips the reader."""
    import httpx

    port = free_port()
    mail_ws.env["DIGEST_SITE_URL"] = f"http://127.0.0.1:{port}/"
    add_subscribers(mail_ws, 2)
    mail_ws.run("send")
    link = str(smtp_server.to("reader0@example.org")[0].message["List-Unsubscribe"]).split(",")[0].strip(" <>")
    server = subprocess.Popen(
        [sys.executable, "-m", "digest", "serve", "--port", str(port)],
        cwd=mail_ws.root,
        env=mail_ws.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                response = httpx.post(link, content=b"List-Unsubscribe=One-Click", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail("digest serve did not start")
        assert response.status_code == 200
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=10)
    assert _unsubscribed_addresses(mail_ws) == {"reader0@example.org"}


def test_a_plain_http_unsubscribe_link_is_warned_about(mail_ws: Workspace) -> None:
    add_subscribers(mail_ws, 1)
    assert "not https" not in mail_ws.run("send", "--dry-run", str(mail_ws.root / "a")).stderr
    mail_ws.env["DIGEST_UNSUBSCRIBE_URL"] = "http://lists.example.org/unsubscribe"
    assert "is not https" in mail_ws.run("send", "--dry-run", str(mail_ws.root / "b")).stderr


def test_an_unsubscribe_journaled_during_a_render_is_applied_before_mailing(
    mail_ws: Workspace, smtp_server: MailServer
) -> None:
    """`digest serve` journals an opt-out when a render holds the state; the mailing that follows the render (the
    scheduler publishes, then mails at once) applies the journal first and does not mail the reader who left."""
    from digest.optouts import OptOut, OptOutJournal

    readers = add_subscribers(mail_ws, 3)
    [(subscriber_id, nonce)] = mail_ws.sql("SELECT id, token_nonce FROM subscribers WHERE email = ?", readers[1])
    OptOutJournal.beside(mail_ws.state).append(OptOut(datetime.now(UTC), subscriber_id, nonce))
    result = mail_ws.run("send")
    assert "applied 1 unsubscribes journaled" in result.stderr
    assert {m.rcpt_tos[0] for m in smtp_server.received} == {readers[0], readers[2]}
    assert _unsubscribed_addresses(mail_ws) == {readers[1]}
    assert not OptOutJournal.beside(mail_ws.state).waiting()


def test_send_renders_the_mailers_copy_from_the_state_when_this_host_has_none(
    mail_ws: Workspace, smtp_server: MailServer
) -> None:
    """A site rendered by an older digest (no `.mail/` copy), or an issue another host published into a shared
    state: `send` renders the email from the state instead of refusing."""
    import shutil

    add_subscribers(mail_ws, 2)
    shutil.rmtree(mail_ws.site / "issues" / "1" / ".mail")
    result = mail_ws.run("send")
    assert "2 sent" in result.stdout
    assert "no rendered email on this host; rendered it here from the state" in result.stderr
    assert (mail_ws.site / "issues" / "1" / ".mail" / "slots.json").is_file()
    assert len(smtp_server.received) == 2


def test_the_send_path_loads_no_renderer() -> None:
    """Sending fills the personal-link markers of an already rendered email: the modules it goes through load
    neither the template engine nor MJML nor feedgen (each send process would pay ~0.15 s of start-up for them),
    nor the seed text's parsers, nor the bounce patterns and mailbox readers a send needs only when a server
    refuses a message (together ~20 ms of a start-up of ~0.3 s, which is 7 % of a 2,000-message send to Postfix)."""
    modules = "digest.cli, digest.cli.mailing, digest.publisher, digest.sending, digest.message, digest.transport"
    unwanted = {"jinja2", "mjml", "feedgen", "linkify_it", "pylatexenc", "digest.text"}
    unwanted |= {"digest.bounces.classify", "digest.bounces.mailboxes"}
    probe = f"import sys, {modules}, digest.slots; print(sorted({unwanted!r} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_program_settles_its_heap_once_settings_are_read(tmp_path: Path) -> None:
    """`digest` (console script, `python -m digest`) freezes what start-up built, so the garbage collector does not
    walk pydantic's ~40,000 objects again during a send nor at exit (about 50 ms of a 4 s send); a test calling
    `main` in its own process keeps its collector as it is."""
    from importlib.metadata import entry_points

    [script] = [e for e in entry_points(group="console_scripts") if e.name == "digest"]
    assert script.value == "digest.cli:run"
    for module in ("digest", "digest.cli"):
        assert "run()" in (Path(__file__).parents[1] / module.replace(".", "/") / "__main__.py").read_text()
    probe = (
        "import gc, sys\nfrom digest.cli import {entry}\nsys.argv = ['digest', 'status']\n"
        "try:\n    {entry}()\nexcept SystemExit:\n    pass\nprint(gc.get_freeze_count(), file=sys.stderr)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    counts = {}
    for entry in ("run", "main"):
        done = subprocess.run(
            [sys.executable, "-c", probe.format(entry=entry)], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        counts[entry] = int(done.stderr.strip().splitlines()[-1])
    assert counts["run"] > 10_000
    assert counts["main"] == 0
