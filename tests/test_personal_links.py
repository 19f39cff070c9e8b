"""Each subscriber's own links (unsubscribe, preferences) go only into the template's slots (issue 12): seed text
that spells a placeholder never receives a token, and the copy of the email published on the site has no marker.
Through the real path: a seed file, `digest render`, `digest send` to an SMTP server keeping the raw bytes."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

from digest.tokens import Purpose, read_token
from tests import test_send_cli
from tests.conftest import Workspace
from tests.mail_util import MailServer, smtp_server_fixture  # noqa: F401  (fixture)
from tests.test_cli_render import paper

SECRET = test_send_cli.SECRET
mail_ws = test_send_cli.mail_ws  # the fixture: issue 1 rendered, SMTP settings pointing at `smtp_server`
TRAP_URL = "https://trap.example/paper?next=%%UNSUBSCRIBE_URL%%&p=%%PREFERENCES_URL%%"


def test_placeholders_in_seed_text_never_receive_a_token(mail_ws: Workspace, smtp_server: MailServer) -> None:
    mail_ws.add_seed(
        "002_trap.md",
        paper("Trap %%UNSUBSCRIBE_URL%%", "陷阱 %%PREFERENCES_URL%%", TRAP_URL, "Abstract %%UNSUBSCRIBE_URL%% end."),
    )
    mail_ws.run("render", "--now", "2024-09-30T08:00:00+08:00")
    mail_ws.run("subscribers", "add", "reader@example.org")
    mail_ws.run("send")
    [received] = smtp_server.received
    msg = received.message
    text, page = (part.get_content() for part in msg.iter_parts())
    hrefs = re.findall(r'href="([^"]*)"', page)
    unsubscribe = [h for h in hrefs if "/unsubscribe?" in h]
    preferences = [h for h in hrefs if "/preferences/" in h]
    assert len(unsubscribe) == len(preferences) == 1
    unsubscribe_token = parse_qs(urlsplit(unsubscribe[0].replace("&amp;", "&")).query)["token"][0]
    token = preferences[0].rsplit("/", 1)[1]
    for body in (text, page):  # the footer's unsubscribe and preferences links, nowhere else
        assert body.count(token) == 1 and body.count(unsubscribe_token) == 1
    assert "%%UNSUBSCRIBE_URL%%" in text and "Abstract %%UNSUBSCRIBE_URL%% end." in text  # seed text kept as typed
    assert {h for h in hrefs if "trap.example" in h} == {TRAP_URL.replace("&", "&amp;")}  # title and quiet link
    assert not re.search(r"%%(?:UNSUBSCRIBE|PREFERENCES)-[0-9a-f]+%%", text + page), "every marker was filled in"
    now = datetime.now(UTC)
    site = "https://digest.example.org/"
    subject = read_token(SECRET, Purpose.UNSUBSCRIBE, site + "unsubscribe", unsubscribe_token, now=now)
    assert subject == read_token(SECRET, Purpose.PREFERENCES, site, token, now=now)  # the reader's subscription
    assert preferences[0] == f"https://digest.example.org/preferences/{token}"
    assert f"管理订阅 / Preferences: https://digest.example.org/preferences/{token}" in text


def test_the_web_copy_of_the_email_has_no_marker_and_no_token(mail_ws: Workspace) -> None:
    for name in ("email.html", "email.txt"):
        published = (mail_ws.site / "issues" / "1" / name).read_text(encoding="utf-8")
        assert "%%" not in published.replace("&#37;%", "")
        assert "token" not in published
        assert "https://digest.example.org/subscribe" in published
    hidden = mail_ws.site / "issues" / "1" / ".mail"
    assert sorted(p.name for p in hidden.iterdir()) == ["email.html", "email.txt", "slots.json"]
