"""The markers where the mailer puts each subscriber's own links (issue 16): nobody outside can know them, and a
marker anywhere but the template's own slots stops the mailing instead of receiving a link.

The markers used to be a hash of public data (the feed id, the issue number, the papers), and the editor's note was
not part of it: a note quoting the marker put every subscriber's unsubscribe token into the attacker's URL in the
text part. Now they are an HMAC with secret_key, and `digest send` counts them against the template's slots.
Through the real path: seed and note files, `digest render` / `rebuild`, `digest send` to an aiosmtpd server."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest

from digest.tokens import Purpose, read_token
from tests.conftest import Workspace
from tests.mail_util import MailServer, smtp_server_fixture  # noqa: F401  (fixture)
from tests.test_cli_render import paper
from tests.test_send_cli import SECRET

SITE = "https://digest.example.org/"
GENERIC = "%%UNSUBSCRIBE_URL%% %%PREFERENCES_URL%%"
READERS = ("ann@example.org", "bob@example.org")


def configure_mail(ws: Workspace, server: MailServer) -> None:
    ws.env.update(
        {
            "DIGEST_SMTP__HOST": "127.0.0.1",
            "DIGEST_SMTP__PORT": str(server.port),
            "DIGEST_SMTP__SECURITY": "none",
            "DIGEST_SMTP__TIMEOUT": "5",
            "DIGEST_FROM_ADDRESS": "论文周报 <digest@example.org>",
            "DIGEST_SENDER_ADDRESS": "1 Example Road, Example City",
            "DIGEST_MAX_MESSAGES_PER_SECOND": "1000",
        }
    )


def marks(ws: Workspace, issue: int) -> tuple[str, str]:
    slots = json.loads((ws.site / "issues" / str(issue) / ".mail" / "slots.json").read_text(encoding="utf-8"))
    return slots["unsubscribe"], slots["preferences"]


def public_marks(ws: Workspace) -> tuple[str, str]:
    """Issue 1's markers computed the old way, from public data only: what a render without secret_key writes
    (the feed id, the issue number and the papers' hashes; the old code wrote the same with a key)."""
    key = ws.env.pop("DIGEST_SECRET_KEY")
    ws.run("render", "--now", "2024-09-23T08:00:00+08:00")
    ws.env["DIGEST_SECRET_KEY"] = key
    return marks(ws, 1)


def attack_text(known: tuple[str, ...]) -> str:
    """Text quoting every marker an attacker could know, each inside a URL of theirs."""
    urls = " ".join(f"https://evil.example/c?t={mark}" for mark in known)
    return f"Please read {urls} and {GENERIC} now."


def assert_links_only_in_slots(server: MailServer, issue: int, bait: str) -> None:
    """Each reader got one mail whose html and text parts hold their own unsubscribe and preferences links exactly
    once (the footer's slots), and the bait text arrived as typed, with no token in it."""
    assert sorted(server.recipients()) == sorted(READERS)
    for reader in READERS:
        [received] = server.to(reader)
        msg = received.message
        text, page = (part.get_content() for part in msg.iter_parts())
        assert f"第 {issue} 期" in page
        hrefs = re.findall(r'href="([^"]*)"', page)
        [unsubscribe] = [h for h in hrefs if "/unsubscribe?" in h]
        [preferences] = [h for h in hrefs if "/preferences/" in h]
        unsubscribe_token = parse_qs(urlsplit(unsubscribe.replace("&amp;", "&")).query)["token"][0]
        preferences_token = preferences.rsplit("/", 1)[1]
        now = datetime.now(UTC)
        owner = read_token(SECRET, Purpose.UNSUBSCRIBE, SITE + "unsubscribe", unsubscribe_token, now=now)
        assert owner == read_token(SECRET, Purpose.PREFERENCES, SITE, preferences_token, now=now)
        for body in (text, page):
            assert body.count(unsubscribe_token) == 1 and body.count(preferences_token) == 1
        assert f"退订 / Unsubscribe: {unsubscribe.replace('&amp;', '&')}" in text
        assert bait in " ".join(text.split())  # the attacker's text arrives as typed (wrapped): nothing filled in
        for url in re.findall(r"https://evil\.example/\S*", text + page):
            assert "token" not in url and "preferences" not in url


@pytest.mark.parametrize("rebuild", [True, False], ids=["rebuilt", "sent-from-old-render"])
def test_a_note_quoting_the_public_marker_gets_no_link(
    workspace: Workspace, smtp_server: MailServer, rebuild: bool
) -> None:
    configure_mail(workspace, smtp_server)
    known = public_marks(workspace)
    bait = attack_text(known)
    notes = workspace.seeds / "_notes"
    notes.mkdir(exist_ok=True)
    (notes / "1.md").write_text(bait + "\n", encoding="utf-8")
    if rebuild:  # the note is picked up by a rebuild with the key ...
        workspace.run("rebuild")
    # ... or, unrebuilt, send finds a copy made without the key and renders it again before mailing
    for reader in READERS:
        workspace.run("subscribers", "add", reader)
    workspace.run("send")
    assert_links_only_in_slots(smtp_server, 1, bait)
    assert marks(workspace, 1) != known


def test_a_seed_quoting_known_markers_gets_no_link(workspace: Workspace, smtp_server: MailServer) -> None:
    configure_mail(workspace, smtp_server)
    old = public_marks(workspace)
    workspace.run("rebuild")
    leaked = marks(workspace, 1)  # even issue 1's secret markers, had they leaked
    bait = attack_text((*old, *leaked))
    workspace.add_seed("zzz_trap.md", paper("Trap paper", "陷阱论文", "https://arxiv.org/abs/2409.99999", bait))
    workspace.run("render", "--now", "2024-09-30T08:00:00+08:00")
    for reader in READERS:
        workspace.run("subscribers", "add", reader)
    workspace.run("send")
    assert_links_only_in_slots(smtp_server, 2, bait)


def test_a_marker_outside_the_slots_stops_the_mailing(workspace: Workspace, smtp_server: MailServer) -> None:
    """Even the real marker (as if the hidden .mail/ folder had leaked) placed in the note sends nobody anything."""
    configure_mail(workspace, smtp_server)
    workspace.run("render", "--now", "2024-09-23T08:00:00+08:00")
    notes = workspace.seeds / "_notes"
    notes.mkdir(exist_ok=True)
    (notes / "1.md").write_text(attack_text(marks(workspace, 1)) + "\n", encoding="utf-8")
    workspace.run("rebuild")
    for reader in READERS:
        workspace.run("subscribers", "add", reader)
    result = workspace.run("send", check=False)
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert "issue 1: not sending: email.txt holds the unsubscribe link marker 2 times" in line
    assert "1 slot(s)" in line and "digest rebuild" in line
    assert smtp_server.received == []
    assert workspace.sql("SELECT COUNT(*) FROM deliveries") == [(0,)]
    (notes / "1.md").write_text("A harmless note.\n", encoding="utf-8")  # fixed: the mailing goes out
    workspace.run("rebuild")
    workspace.run("send")
    assert sorted(smtp_server.recipients()) == sorted(READERS)
