"""The delivery id in the header fields providers echo back: the fast message template writes exactly what the
reference message does, and nothing but a well-formed id ever reaches a header."""

from __future__ import annotations

import dataclasses
import email
import email.policy

import pytest

from digest.bounces.verp import make_verp_id
from digest.headers import DELIVERY_PROVIDERS, delivery_fields
from digest.message import build_reference_message, message_id, message_template
from digest.model import Subscriber
from tests.test_message import URL, WHEN, mail

SECRET = "test-secret-key-0123456789abcdef"


@pytest.mark.parametrize("eight_bit", [True, False])
@pytest.mark.parametrize("providers", [(), DELIVERY_PROVIDERS, ("postmark",)])
def test_the_template_writes_the_delivery_fields_as_the_reference_does(
    providers: tuple[str, ...], eight_bit: bool
) -> None:
    issue = dataclasses.replace(mail(), providers=providers)
    template = message_template(issue, eight_bit=eight_bit)
    assert template.pieces and template.wire_pieces, "the fast template is used, not only the reference"
    for sub_id in (1, 70_000):
        sub = Subscriber(f"r{sub_id}@example.org", id=sub_id)
        delivery = make_verp_id(SECRET, 1, sub_id)
        options = {"unsubscribe_url": URL, "date": WHEN, "msgid": message_id(1, sub.email, "x.org")}
        fast = template.render(sub, delivery_id=delivery, **options)  # type: ignore[arg-type]
        reference = build_reference_message(
            issue,
            sub,
            boundary=template.boundary,
            delivery_id=delivery,
            eight_bit=eight_bit,
            **options,  # type: ignore[arg-type]
        )
        assert fast == reference
        assert template.render_wire(sub, delivery_id=delivery, **options).message == fast  # type: ignore[arg-type]
        parsed = email.message_from_bytes(fast, policy=email.policy.default)
        assert parsed["X-Digest-Delivery"] == delivery
        assert (parsed["X-SMTPAPI"] is not None) == ("sendgrid" in providers)
        assert (parsed["X-Mailgun-Variables"] is not None) == ("mailgun" in providers)
        assert (parsed["X-PM-Metadata-digest-delivery"] is not None) == ("postmark" in providers)
    # A test copy (no delivery) carries none of them, and is still made from the template.
    bare = template.render(Subscriber("t@example.org"), unsubscribe_url=URL, date=WHEN, msgid="<t@x.org>")
    assert b"X-Digest-Delivery" not in bare and b"X-SMTPAPI" not in bare


@pytest.mark.parametrize(
    "value",
    ["a" * 28 + "\r\nBcc: victim@example.net", "a" * 28, "a" * 30, "A" * 29 + "\n", "01" * 14 + "a", ""],
)
def test_nothing_but_a_well_formed_delivery_id_reaches_a_header(value: str) -> None:
    assert delivery_fields(value, DELIVERY_PROVIDERS) == b""
