"""Every subscriber status change leaves a line on the subscriber's trail, in the transaction of the change, naming
what made it (signup, confirm, preference page, unsubscribe link, List-Unsubscribe, bounce report, send, CLI,
import) and when; `digest subscribers history` shows it, `digest subscribers unsuppress` undoes a suppression with a
reason on it, the personal-data download includes it and erasure takes it. Through a real `digest serve`, real
SMTP (aiosmtpd), the real state on SQLite and PostgreSQL."""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

import digest
from digest import subscriptions
from digest.model import DeliveryStatus, Issue, SubscriberStatus
from digest.optouts import OptOut
from digest.settings import Settings
from digest.store import Store
from digest.subscribers import SubscriberRow
from digest.tokens import TokenSubject, unsubscribe_link
from tests import test_send_cli
from tests.conftest import Workspace
from tests.mail_util import MailServer, smtp_server_fixture  # noqa: F401  (fixture)
from tests.test_bounces_cli import dsn_for, import_bounces
from tests.test_send_cli import add_subscribers
from tests.test_signup import confirmed, csrf_of, serve_with_mail
from tests.test_web import SECRET, Server

mail_ws = test_send_cli.mail_ws  # the fixture: issue 1 rendered, SMTP settings pointing at `smtp_server`
NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def history(ws: Workspace, email: str) -> list[tuple[str | None, str, str, str]]:
    """`digest subscribers history EMAIL --json` as (from, to, source, reason) lines."""
    data = json.loads(ws.run("subscribers", "history", email, "--json").stdout)
    return [(c["from"], c["to"], c["source"], c["reason"]) for c in data["changes"]]


def unsubscribe_url(srv: Server) -> str:
    """Ada's unsubscribe link as her latest mail carries it (a resubscription makes a new one)."""
    with Store.open(srv.ws.state_location) as store:
        sub = store.subscriber("ada@example.org")
    assert sub is not None
    return unsubscribe_link(srv.base + "/unsubscribe", SECRET, sub)


@pytest.fixture
def srv(tmp_path: Path, smtp_server: MailServer, state: Path | str) -> Iterator[Server]:
    server = serve_with_mail(tmp_path / "work", smtp_server, state)
    yield server
    server.stop()


@pytest.mark.both_states
def test_the_web_and_the_cli_each_leave_their_line(srv: Server, browser: httpx.Client, smtp_server: MailServer) -> None:
    url = confirmed(srv, browser, smtp_server, "ada@example.org", name="Ada")
    csrf = csrf_of(browser.get(url).text)
    for action in ("pause", "resume", "name", "stop"):  # a new name is no status change: no line
        assert browser.post(url, data={"csrf": csrf, "action": action, "name": "A"}).status_code == 200
    srv.ws.run("subscribers", "add", "ada@example.org", "--resubscribe")
    one_click = httpx.post(unsubscribe_url(srv), data={"List-Unsubscribe": "One-Click"}, timeout=10)
    assert one_click.status_code == 200
    srv.ws.run("subscribers", "add", "ada@example.org", "--resubscribe")
    assert browser.post(unsubscribe_url(srv), data={}).status_code == 200  # the button on the link's page

    assert history(srv.ws, "ada@example.org") == [
        (None, "pending", "signup", ""),
        ("pending", "active", "confirm", ""),
        ("active", "paused", "preference page", ""),
        ("paused", "active", "preference page", ""),
        ("active", "unsubscribed", "preference page", ""),
        ("unsubscribed", "active", "cli", ""),
        ("active", "unsubscribed", "List-Unsubscribe", ""),
        ("unsubscribed", "active", "cli", ""),
        ("active", "unsubscribed", "unsubscribe link", ""),
    ]
    text = srv.ws.run("subscribers", "history", "ada@example.org")
    lines = text.stdout.splitlines()
    assert len(lines) == 9 and lines[0].endswith("(new) -> pending  signup") and "9 changes" in text.stderr
    assert datetime.fromisoformat(lines[0].split()[0]).tzinfo is not None


@pytest.mark.both_states
def test_a_bounce_suppresses_with_its_report_named_and_unsuppress_undoes_it(
    mail_ws: Workspace, smtp_server: MailServer
) -> None:
    add_subscribers(mail_ws, 3)
    smtp_server.reject = {"reader0@example.org"}  # 550 5.1.1 at RCPT TO
    mail_ws.run("send")
    senders = {m.rcpt_tos[0]: m.mail_from for m in smtp_server.received}
    report = mail_ws.root / "bounce-1.eml"
    report.write_bytes(dsn_for(senders["reader1@example.org"]))
    assert import_bounces(mail_ws, str(report)).returncode == 0

    refused = history(mail_ws, "reader0@example.org")
    assert refused[0] == (None, "active", "import:csv", "")
    assert refused[1][:3] == ("active", "bounced", "send issue 1") and "550 5.1.1" in refused[1][3]
    bounced = history(mail_ws, "reader1@example.org")
    assert bounced[1][:3] == ("active", "bounced", f"bounce report {report}") and "5.1.1" in bounced[1][3]

    no_reason = mail_ws.run("subscribers", "unsuppress", "reader1@example.org", check=False)
    assert no_reason.returncode == 2 and "--reason" in no_reason.stderr
    undone = mail_ws.run("subscribers", "unsuppress", "reader1@example.org", "--reason", "she fixed her mailbox")
    assert "reader1@example.org: active again" in undone.stdout
    assert history(mail_ws, "reader1@example.org")[-1] == ("bounced", "active", "cli", "she fixed her mailbox")
    assert test_send_cli.ledger(mail_ws)["reader1@example.org"][0] == "bounced"  # the past stays as it was
    again = mail_ws.run("subscribers", "unsuppress", "reader1@example.org", "--reason", "twice", check=False)
    assert again.returncode == 1 and "active, not bounced or complained: nothing changed" in again.stderr
    assert len(history(mail_ws, "reader1@example.org")) == 3
    unknown = mail_ws.run("subscribers", "unsuppress", "nobody@example.org", "--reason", "x", check=False)
    assert unknown.returncode == 1 and "no such subscriber" in unknown.stderr
    missing = mail_ws.run("subscribers", "history", "nobody@example.org", check=False)
    assert missing.returncode == 1 and "no such subscriber" in missing.stderr


@pytest.mark.both_states
def test_erasure_takes_the_trail_and_only_resubscribe_brings_the_address_back(state: Path | str) -> None:
    settings = Settings(signup_ip_limit=10, signup_address_limit=3)
    with Store.open(state) as store:
        subscriptions.record_signup(store, settings, "eve@example.org", "Eve", "192.0.2.1", NOW)
        eve = store.subscriber("eve@example.org")
        assert eve is not None
        subject = TokenSubject(eve.id, eve.token_nonce)
        subscriptions.check_confirmation(store, subject, True, NOW)
        data = subscriptions.export_personal_data(store, subject)
        assert data is not None
        assert [(h["from"], h["to"], h["source"]) for h in data["history"]] == [
            (None, "pending", "signup"),
            ("pending", "active", "confirm"),
        ]
        assert data["history"][0]["at"] == NOW.isoformat()

        assert subscriptions.erase(store, subject, NOW)
        assert store.session.execute("SELECT COUNT(*) FROM status_changes").fetchone()[0] == 0
        assert subscriptions.history(store, "eve@example.org") == (None, [], True)
        refused = subscriptions.unsuppress(store, "eve@example.org", "asked by phone", NOW)
        assert refused == (subscriptions.Unsuppress.ERASED, None)
        assert store.subscriber("eve@example.org") is None

        outcome, back = subscriptions.unsuppress(store, "eve@example.org", "asked by phone", NOW, resubscribe=True)
        assert outcome is subscriptions.Unsuppress.RESUBSCRIBED and back is not None
        assert back.status is SubscriberStatus.ACTIVE and store.suppression("eve@example.org") is None
        _, changes, erased = subscriptions.history(store, "eve@example.org")
        assert not erased and [(c.old, c.new, c.source, c.reason) for c in changes] == [
            (None, SubscriberStatus.ACTIVE, "cli", "asked by phone")
        ]


@pytest.mark.both_states
def test_a_complaint_a_journaled_optout_and_a_webhook_name_their_source(state: Path | str) -> None:
    with Store.open(state) as store:
        rows = [SubscriberRow(f"r{i}@example.org", "", i) for i in range(3)]
        subscriptions.add_subscribers(store, rows, NOW, trail=subscriptions.import_source("substack"))
        ids = [sub.id for sub in store.active_subscribers()]
        with store.transaction():
            assert subscriptions.suppress_for_hard_bounce(
                store, ids[0], "550 5.1.1 no such user", NOW, source=subscriptions.webhook("ses", "ev-1")
            )
            assert subscriptions.suppress_for_complaint(
                store, ids[0], "abuse report", NOW, source=subscriptions.bounce_report("cur/1")
            )
            # Ended already: nothing changes, no line.
            assert not subscriptions.suppress_for_hard_bounce(store, ids[0], "again", NOW, source="x")
        subscriptions.apply_optouts(store, [OptOut(NOW, None, "", "r1@example.org")])
        subscriptions.apply_optouts(store, [OptOut(NOW, None, "", "r1@example.org")])  # twice: one line
        trail = [(c.old, c.new, c.source, c.reason) for c in store.status_changes(ids[0])]
        assert trail == [
            (None, SubscriberStatus.ACTIVE, "import:substack", ""),
            (SubscriberStatus.ACTIVE, SubscriberStatus.BOUNCED, "webhook ses ev-1", "550 5.1.1 no such user"),
            (SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED, "bounce report cur/1", "abuse report"),
        ]
        assert [(c.new, c.source) for c in store.status_changes(ids[1])][1:] == [
            (SubscriberStatus.UNSUBSCRIBED, subscriptions.JOURNALED_OPTOUT)
        ]
        assert len(store.status_changes(ids[2])) == 1


@pytest.mark.both_states
def test_after_unsuppress_the_soft_bounce_streak_starts_again(state: Path | str) -> None:
    """Soft bounces before the publisher restored the address do not count towards the next suppression."""
    later = [NOW + timedelta(hours=h) for h in range(5)]
    with Store.open(state) as store:
        subscriptions.add_subscribers(store, [SubscriberRow("di@example.org", "", 0)], NOW)
        sub = store.subscriber("di@example.org")
        assert sub is not None

        def soft_bounce(issue: int) -> str:
            with store.transaction():
                store.record_issue(Issue(number=issue, published=NOW, entries=()), NOW)
                assert store.claim_delivery(issue, sub.id, f"<{issue}@x>", later[issue])
                store.record_delivery(
                    issue, sub.id, DeliveryStatus.FAILED, "452 mailbox full", later[issue], 1, bounce="soft"
                )
                return subscriptions.suppress_after_streak(
                    store, sub.id, 2, "452 mailbox full", later[issue], source="send issue"
                )

        assert soft_bounce(1).startswith("1 of 2") and soft_bounce(2).endswith("suppressed (452 mailbox full)")
        outcome, _ = subscriptions.unsuppress(store, "di@example.org", "mailbox emptied", later[2])
        assert outcome is subscriptions.Unsuppress.RESTORED
        assert soft_bounce(3).startswith("1 of 2"), "the two before the undo no longer count"
        assert store.subscriber_by_id(sub.id).status is SubscriberStatus.ACTIVE  # type: ignore[union-attr]
        assert soft_bounce(4).endswith("suppressed (452 mailbox full)")


def test_history_and_unsuppress_create_no_state(workspace: Workspace) -> None:
    for args in (("history", "ada@example.org"), ("unsuppress", "ada@example.org", "--reason", "x")):
        result = workspace.run("subscribers", *args, check=False)
        assert result.returncode == 1 and "no state yet" in result.stderr, result.stderr
    assert not workspace.has_state()


def test_in_subscriptions_only_the_trail_helpers_write_a_status() -> None:
    """A status write in subscriptions.py outside `_move` (or a write by address, which `_trail` follows) would
    leave no line on the trail."""
    tree = ast.parse((Path(digest.__file__).parent / "subscriptions.py").read_text(encoding="utf-8"))
    found = []
    for func in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
        for node in ast.walk(func):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("set_subscriber_status", "unsubscribe")
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "store"
                and func.name != "_move"
            ):
                found.append(f"{func.name}:{node.lineno}")
    assert found == []
