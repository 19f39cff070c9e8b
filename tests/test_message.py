"""Building one subscriber's message (pure): headers cleaned by our code, parts in order, 7-bit raw headers, the HTML
folded for 8bit without changing what it shows, Gmail's clipping size checked as transmitted, DKIM over the
List-Unsubscribe headers."""

from __future__ import annotations

import base64
import email
import email.policy
import re
import smtplib
import subprocess
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import dkim
import pytest
from hypothesis import given
from hypothesis import strategies as st

from digest.errors import SettingsError
from digest.message import (
    MAX_LINE_OCTETS,
    DkimKey,
    IssueMail,
    MessageTooLarge,
    build_message,
    build_reference_message,
    clean_header,
    fold_html,
    format_subject,
    message_id,
    message_template,
    wire_message,
)
from digest.model import Subscriber
from digest.render.email import UNSUBSCRIBE_PLACEHOLDER

URL = "https://digest.example.org/unsubscribe?token=abc.def"
WHEN = datetime(2024, 9, 23, 0, 0, tzinfo=UTC)


def mail(html: str = "", text: str = "", subject: str = "AI 论文周报 · 第 1 期") -> IssueMail:
    return IssueMail(
        issue=1,
        html=html or f'<html><body><p>你好</p><a href="{UNSUBSCRIBE_PLACEHOLDER}">退订</a></body></html>',
        text=text or f"你好\n退订: {UNSUBSCRIBE_PLACEHOLDER}\n",
        subject=subject,
        from_address="论文周报 <digest@example.org>",
        list_id="digest.example.org",
        domain="digest.example.org",
    )


def build(issue: IssueMail, sub: Subscriber, **kw: object) -> bytes:
    options: dict[str, object] = {"unsubscribe_url": URL, "date": WHEN, "msgid": message_id(1, sub.email, "x.org")}
    options.update(kw)
    return build_message(issue, sub, **options).message  # type: ignore[arg-type]


def parse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def test_clean_header_turns_every_control_character_into_one_space() -> None:
    assert clean_header("a\r\nBcc: x@y\x00\x1b\x7f\x85\u2028b\tc  ") == "a Bcc: x@y b c"


@given(st.text())
def test_clean_header_never_leaves_a_line_break(value: str) -> None:
    assert not re.search(r"[\x00-\x1f\x7f\x85\u2028\u2029]", clean_header(value))


def test_subject_template_allows_only_its_four_fields() -> None:
    assert format_subject("{title} #{number} {date} ({count})", title="T\r\n", number=3, date="d", count=9) == (
        "T #3 d (9)"
    )
    with pytest.raises(SettingsError, match="unknown field"):
        format_subject("{title.__class__}", title="T", number=1, date="d", count=1)
    with pytest.raises(SettingsError, match="unknown field"):
        format_subject("{secret}", title="T", number=1, date="d", count=1)


def test_message_has_both_parts_in_order_and_every_list_header() -> None:
    data = build(mail(), Subscriber("reader@example.org", '读者 "R", <x>'))
    msg = parse(data)
    assert data.split(b"\r\n\r\n", 1)[0].isascii()
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    text, html = (p.get_content() for p in msg.iter_parts())
    assert URL in text and URL.replace("&", "&amp;") in html
    assert str(msg["Subject"]) == "AI 论文周报 · 第 1 期"
    assert msg["To"].addresses[0].display_name == '读者 "R", <x>'
    assert msg["List-Id"] == "<digest.example.org>"
    assert msg["List-Unsubscribe"] == f"<{URL}>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Date"] == "Mon, 23 Sep 2024 00:00:00 +0000"


def test_message_id_is_deterministic_per_issue_subscriber_and_site() -> None:
    assert message_id(1, "a@x.org", "digest.example.org") == message_id(1, "a@x.org", "digest.example.org")
    assert message_id(1, "a@x.org", "d.org") != message_id(2, "a@x.org", "d.org") != message_id(1, "b@x.org", "d.org")
    assert "a@x.org" not in message_id(1, "a@x.org", "d.org")


def test_hostile_name_cannot_add_a_header() -> None:
    msg = parse(build(mail(), Subscriber("r@example.org", "Eve\r\nBcc: all@example.net\r\n\r\nbody")))
    assert msg["Bcc"] is None
    assert len(msg.get_all("To") or []) == 1


def test_mailto_unsubscribe_follows_the_https_url() -> None:
    msg = parse(build(mail(), Subscriber("r@example.org"), unsubscribe_mailto="leave@example.org"))
    assert msg["List-Unsubscribe"] == f"<{URL}>, <mailto:leave@example.org?subject=unsubscribe>"


def test_fold_html_keeps_lines_short_and_changes_nothing_visible() -> None:
    html = (
        '<html><head><style>p { font-family: "Noto Sans" }</style></head><body>'
        + '<p style="a: b; c: d" class="x y">'
        + "中文没有空格" * 200
        + "</p>"
        + "<p>word " * 300
        + "</body></html>"
    )
    folded = fold_html(html)
    assert all(len(line.encode()) <= MAX_LINE_OCTETS for line in folded.split("\n"))
    assert '<style>p { font-family: "Noto Sans" }</style>' in folded  # raw text untouched
    restored = folded.replace("<wbr\n>", "").replace("\n>", ">").replace("\n", " ")
    assert restored == html


def test_long_cjk_html_goes_8bit_with_short_lines_and_the_same_content() -> None:
    page = "<html><body>" + "".join(f"<p>{'论文摘要' * 250}</p>" for _ in range(30)) + "</body></html>"
    data = build(mail(html=page), Subscriber("r@example.org"))
    html_part = list(parse(data).iter_parts())[1]
    assert html_part["Content-Transfer-Encoding"] == "8bit"
    content = html_part.get_content().replace("\r\n", "\n").rstrip("\n")
    assert content.replace("<wbr\n>", "").replace("\n>", ">").replace("\n", " ") == page
    assert all(len(line) <= MAX_LINE_OCTETS for line in data.split(b"\r\n"))


def test_without_8bitmime_the_encoded_size_is_what_counts() -> None:
    page = "<html><body>" + "<p>论文</p>" * 6000 + "</body></html>"  # 78 KB as UTF-8, 105 KB in base64
    build(mail(html=page), Subscriber("r@example.org"), eight_bit=True)
    with pytest.raises(MessageTooLarge, match="8BITMIME"):
        build(mail(html=page), Subscriber("r@example.org"), eight_bit=False)
    small = parse(build(mail(), Subscriber("r@example.org"), eight_bit=False))
    assert {p["Content-Transfer-Encoding"] for p in small.iter_parts()} <= {"base64", "quoted-printable"}


def test_dkim_signature_covers_the_list_unsubscribe_headers(tmp_path: Path) -> None:
    key = tmp_path / "dkim.pem"
    subprocess.run(["openssl", "genrsa", "-traditional", "-out", str(key), "2048"], check=True, capture_output=True)
    der = subprocess.run(
        ["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"], check=True, capture_output=True
    ).stdout
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)
    data = build(mail(), Subscriber("r@example.org"), dkim=DkimKey("s1", "example.org", key.read_bytes()))
    signature = parse(data)["DKIM-Signature"]
    assert "list-unsubscribe:list-unsubscribe-post" in signature.replace(" ", "").lower()

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"s1._domainkey.example.org."
        return record

    assert dkim.verify(data, dnsfunc=dns)
    tampered = data.replace(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click", b"List-Unsubscribe-Post: nope")
    assert not dkim.verify(tampered, dnsfunc=dns)


SUBSCRIBERS = [
    Subscriber("reader0@example.org", "Reader 0"),
    Subscriber("plain@example.org"),
    Subscriber("o'neil+tag@example.org", "J. O'Neil, Jr."),
    Subscriber("reader@例子.中国", '读者 "R", <x>'),
    Subscriber("eve@example.org", "Eve\r\nBcc: all@example.net\r\n\r\nbody"),
    Subscriber("long@example.org", "A Very Long Name " * 8),
]
PAGES = {
    "short": mail(),
    "ascii text": mail(text=f"Hello\nLeave: {UNSUBSCRIBE_PLACEHOLDER}\n"),
    "long cjk lines": mail(
        html="<html><body>"
        + "".join(f"<p>{'论文摘要' * 250}</p>" for _ in range(5))
        + f'<a href="{UNSUBSCRIBE_PLACEHOLDER}">x</a><a href="{UNSUBSCRIBE_PLACEHOLDER}">y</a></body></html>',
        text="摘要" * 600 + f"\n{UNSUBSCRIBE_PLACEHOLDER}\n",
    ),
}


@pytest.mark.parametrize("eight_bit", [True, False])
@pytest.mark.parametrize("page", sorted(PAGES))
def test_template_gives_the_same_bytes_as_the_email_package(page: str, eight_bit: bool) -> None:
    issue = PAGES[page]
    template = message_template(issue, eight_bit=eight_bit, unsubscribe_mailto="leave@example.org")
    assert template.pieces, "the template is used, not only the reference"
    for i, sub in enumerate(SUBSCRIBERS):
        url = f"{URL}{i}&x=<{i}>"
        options = {"unsubscribe_url": url, "date": WHEN, "msgid": message_id(1, sub.email, "x.org")}
        assert template._fill(sub, url, WHEN, options["msgid"]) is not None, "filled in, not built again"
        fast = template.render(sub, **options)  # type: ignore[arg-type]
        reference = build_reference_message(
            issue,
            sub,
            unsubscribe_mailto="leave@example.org",
            eight_bit=eight_bit,
            boundary=template.boundary,
            **options,  # type: ignore[arg-type]
        )
        assert fast == reference, (page, eight_bit, sub)


def test_template_falls_back_to_the_reference_for_a_url_too_long_for_its_line() -> None:
    issue = mail()
    template = message_template(issue, eight_bit=True)
    url = URL + "x" * 900  # the header line still fits; the HTML line must be folded again
    sub = Subscriber("r@example.org")
    options = {"unsubscribe_url": url, "date": WHEN, "msgid": "<m@x.org>"}
    fast = template.render(sub, **options)  # type: ignore[arg-type]
    assert fast == build_reference_message(issue, sub, boundary=template.boundary, **options)  # type: ignore[arg-type]
    assert all(len(line) <= MAX_LINE_OCTETS for line in fast.split(b"\r\n"))


DOTTED = mail(text=f".starts with a dot\n..two\nmiddle\n.\n退订: {UNSUBSCRIBE_PLACEHOLDER}\n.end\n")


@pytest.mark.parametrize("eight_bit", [True, False])
@pytest.mark.parametrize("page", [*sorted(PAGES), "dotted"])
def test_wire_form_is_the_message_dot_stuffed_as_smtplib_does(page: str, eight_bit: bool) -> None:
    issue = PAGES.get(page, DOTTED)
    template = message_template(issue, eight_bit=eight_bit, unsubscribe_mailto="leave@example.org")
    # (without 8bit, the dotted text is quoted-printable, encoded per subscriber, with lines starting with a dot)
    assert template.wire_pieces or (page, eight_bit) == ("dotted", False), "the template's wire form is used"
    for i, sub in enumerate(SUBSCRIBERS):
        for url in (f"{URL}{i}&x=<{i}>", f".{i}", ""):  # a leading dot or nothing in a hole: checked, not trusted
            options = {"unsubscribe_url": url, "date": WHEN, "msgid": message_id(1, sub.email, "x.org")}
            data = template.render(sub, **options)  # type: ignore[arg-type]
            wire = template.render_wire(sub, **options)  # type: ignore[arg-type]
            assert wire.data == smtplib._quote_periods(data) + b".\r\n", (page, eight_bit, sub, url)
            assert wire.eight_bit == (not data.isascii())
            assert wire.message == data


@given(st.lists(st.sampled_from(["", ".", "..", "a", ".a", "中", "\r\n", "\n", "\r"]), max_size=30))
def test_wire_message_normalises_line_ends_and_doubles_leading_dots(pieces: list[str]) -> None:
    raw = "".join(pieces).encode()
    crlf = re.sub(rb"\r\n|\n|\r", b"\r\n", raw)
    crlf += b"" if crlf.endswith(b"\r\n") else b"\r\n"
    wire = wire_message(raw)
    assert wire.data == smtplib._quote_periods(crlf) + b".\r\n"
    assert wire.message == crlf
