"""The subscriber life cycle has one home, digest.subscriptions: every status change goes through it, on a real
state, with `now` passed in; the status sets are defined once, in digest.model."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import digest
from digest import subscriptions
from digest.model import (
    ENDED,
    MAY_REJOIN,
    NOT_ENDED,
    SUBSCRIBED,
    SUPPRESSED,
    DeliveryStatus,
    Issue,
    SubscriberSource,
    SubscriberStatus,
)
from digest.optouts import OptOut, OptOutJournal
from digest.settings import Settings
from digest.store import Store
from digest.subscribers import SubscriberRow
from digest.tokens import TokenSubject

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
PACKAGE = Path(digest.__file__).parent
# Store methods that write a subscriber's status, or its row, or its suppression.
STATUS_WRITERS = {
    "set_subscriber_status",
    "add_subscriber",
    "unsubscribe",
    "suppress",
    "unsuppress",
    "confirm_subscriber",
    "erase_subscriber",
    "set_subscriber_topics",
    "set_subscriber_name",
    "record_status_change",
}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "digest.db") as opened:
        yield opened


def _settings() -> Settings:
    return Settings(signup_ip_limit=10, signup_address_limit=3, keep_signup_ip=True)


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "store" not in p.relative_to(PACKAGE).parts)


def _status(store: Store, email: str) -> SubscriberStatus:
    found = store.subscriber(email)
    assert found is not None
    return found.status


def _subject(store: Store, email: str) -> TokenSubject:
    found = store.subscriber(email)
    assert found is not None
    return TokenSubject(found.id, found.token_nonce)


# --- one home ---------------------------------------------------------------------------------------------------


def test_only_subscriptions_writes_a_subscriber_status_outside_the_store() -> None:
    writers = []
    for path in _modules():
        if path.name == "subscriptions.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in STATUS_WRITERS
                and not (
                    isinstance(node.func.value, ast.Name) and node.func.value.id in ("subscriptions", "contextlib")
                )
            ):
                writers.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {node.func.attr}")
    assert writers == []


def test_status_sets_are_defined_once_in_the_model() -> None:
    """A tuple, list or set of two or more SubscriberStatus members anywhere but model.py is a second definition."""
    found = []
    for path in [*_modules(), *PACKAGE.glob("store/*.py")]:
        if path.name == "model.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Tuple | ast.List | ast.Set) and len(node.elts) >= 2:
                members = [
                    e
                    for e in node.elts
                    if isinstance(e, ast.Attribute)
                    and isinstance(e.value, ast.Name)
                    and e.value.id == "SubscriberStatus"
                ]
                if len(members) >= 2:
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert found == []


def test_the_status_sets_say_what_they_mean() -> None:
    assert ENDED.isdisjoint(NOT_ENDED) and set(SubscriberStatus) == ENDED | NOT_ENDED
    assert SUPPRESSED | MAY_REJOIN == ENDED and SUPPRESSED.isdisjoint(MAY_REJOIN)
    assert NOT_ENDED - {SubscriberStatus.PENDING} == SUBSCRIBED


# --- the life cycle, on a real state ----------------------------------------------------------------------------


def test_signup_confirm_pause_stop_and_sign_up_again(store: Store) -> None:
    settings = _settings()
    first = subscriptions.record_signup(store, settings, "ada@example.org", "Ada", "192.0.2.1", NOW, ["robotics"])
    assert (
        first.mail is subscriptions.SignupMail.CONFIRM and _status(store, "ada@example.org") is SubscriberStatus.PENDING
    )
    subject = _subject(store, "ada@example.org")
    assert subscriptions.check_confirmation(store, subject, False, NOW).status == 200
    assert _status(store, "ada@example.org") is SubscriberStatus.PENDING  # looking does not confirm
    assert subscriptions.check_confirmation(store, subject, True, NOW).status == 200
    assert subscriptions.check_confirmation(store, subject, True, NOW).status == 409
    again = subscriptions.record_signup(store, settings, "ada@example.org", "", "192.0.2.1", NOW, [])
    assert again.mail is subscriptions.SignupMail.ALREADY
    found = subscriptions.subscription(store, subject)
    assert found is not None and found[1] == ("robotics",)

    assert subscriptions.apply_change(store, settings, subject, "pause", "", NOW).status == 200
    assert _status(store, "ada@example.org") is SubscriberStatus.PAUSED
    assert subscriptions.apply_change(store, settings, subject, "stop", "", NOW).status == 200
    assert _status(store, "ada@example.org") is SubscriberStatus.UNSUBSCRIBED

    back = subscriptions.record_signup(store, settings, "ada@example.org", "", "192.0.2.1", NOW, [])
    assert (
        back.mail is subscriptions.SignupMail.CONFIRM and _status(store, "ada@example.org") is SubscriberStatus.PENDING
    )
    assert subscriptions.apply_change(store, settings, subject, "resume", "", NOW).status == 410  # the old link died


def test_suppressed_addresses_stay_so_until_the_publisher_restores_them(store: Store) -> None:
    settings = _settings()
    subscriptions.add_subscribers(store, [SubscriberRow("bob@example.org", "", 0)], NOW)
    bob = _subject(store, "bob@example.org")
    with store.transaction():
        assert subscriptions.suppress_for_hard_bounce(store, bob.subscriber_id, "5.1.1 no such user", NOW, source="cli")
        assert subscriptions.suppress_for_complaint(store, bob.subscriber_id, "abuse report", NOW, source="cli")
    assert _status(store, "bob@example.org") is SubscriberStatus.COMPLAINED  # a complaint says more than a bounce
    signup = subscriptions.record_signup(store, settings, "bob@example.org", "", "192.0.2.2", NOW, [])
    assert signup.mail is None and _status(store, "bob@example.org") is SubscriberStatus.COMPLAINED

    [(_, kept)] = subscriptions.add_subscribers(store, [SubscriberRow("bob@example.org", "", 0)], NOW)
    assert kept == "complained"
    [(_, restored)] = subscriptions.add_subscribers(
        store, [SubscriberRow("bob@example.org", "", 0)], NOW, resubscribe=True, source=SubscriberSource.IMPORT
    )
    assert restored == "resubscribed" and _status(store, "bob@example.org") is SubscriberStatus.ACTIVE


def test_a_bounce_does_not_reopen_or_relabel_an_unsubscribed_reader(store: Store) -> None:
    subscriptions.add_subscribers(store, [SubscriberRow("cy@example.org", "", 0)], NOW)
    assert subscriptions.unsubscribe_address(store, "cy@example.org", NOW) is not None
    cy = _subject(store, "cy@example.org")
    with store.transaction():
        assert not subscriptions.suppress_for_hard_bounce(store, cy.subscriber_id, "5.1.1", NOW, source="cli")
    assert _status(store, "cy@example.org") is SubscriberStatus.UNSUBSCRIBED
    assert subscriptions.unsubscribe_address(store, "nobody@example.org", NOW) is None


def test_soft_bounces_suppress_after_the_streak(store: Store) -> None:
    subscriptions.add_subscribers(store, [SubscriberRow("di@example.org", "", 0)], NOW)
    di = _subject(store, "di@example.org").subscriber_id
    outcomes = []
    for issue in (1, 2):
        with store.transaction():
            store.record_issue(Issue(number=issue, published=NOW, entries=()), NOW)
            assert store.claim_delivery(issue, di, f"<{issue}@x>", NOW)
            store.record_delivery(issue, di, DeliveryStatus.FAILED, "452 mailbox full", NOW, 1, bounce="soft")
            outcomes.append(subscriptions.suppress_after_streak(store, di, 2, "452 mailbox full", NOW, source="cli"))
    assert outcomes[0].startswith("1 of 2") and outcomes[1].endswith("suppressed (452 mailbox full)")
    assert _status(store, "di@example.org") is SubscriberStatus.BOUNCED


def test_journaled_opt_outs_apply_once_and_skip_an_earlier_subscription(store: Store, tmp_path: Path) -> None:
    settings = _settings()
    subscriptions.add_subscribers(store, [SubscriberRow(f"r{n}@example.org", "", 0) for n in (1, 2)], NOW)
    first, second = _subject(store, "r1@example.org"), _subject(store, "r2@example.org")
    subscriptions.unsubscribe(store, second.subscriber_id, NOW)
    subscriptions.record_signup(store, settings, "r2@example.org", "", "192.0.2.3", NOW, [])  # a new subscription
    journal = OptOutJournal(tmp_path / "digest.db.optouts")
    journal.append(OptOut(NOW, first.subscriber_id, first.nonce))
    journal.append(OptOut(NOW, second.subscriber_id, second.nonce))  # the nonce of the subscription that ended
    assert subscriptions.drain_optouts(store, journal) == 2
    assert subscriptions.drain_optouts(store, journal) == 0
    assert _status(store, "r1@example.org") is SubscriberStatus.UNSUBSCRIBED
    assert _status(store, "r2@example.org") is SubscriberStatus.PENDING


def test_erasing_keeps_only_a_suppression_and_a_confirmed_signup_lifts_it(store: Store) -> None:
    settings = _settings()
    subscriptions.add_subscribers(store, [SubscriberRow("eve@example.org", "Eve", 0)], NOW)
    eve = _subject(store, "eve@example.org")
    data = subscriptions.export_personal_data(store, eve)
    assert data is not None and data["subscriber"]["email"] == "eve@example.org"
    assert subscriptions.erase(store, eve, NOW) and store.subscriber("eve@example.org") is None
    assert subscriptions.export_personal_data(store, eve) is None and not subscriptions.erase(store, eve, NOW)
    assert subscriptions.record_signup(store, settings, "eve@example.org", "", "192.0.2.4", NOW, []).mail is None
    later = NOW + timedelta(days=1)
    [(_, outcome)] = subscriptions.add_subscribers(store, [SubscriberRow("eve@example.org", "", 0)], later)
    assert outcome == "suppressed" and store.suppression("eve@example.org") is not None
