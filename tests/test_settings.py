"""Settings as a user meets them: a secret_key that could be guessed is refused, with a way to make a good one."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest.errors import SettingsError
from digest.settings import load_settings
from tests.conftest import Workspace

HOW_TO_MAKE_ONE = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "digest.toml"
    path.write_text("", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("a" * 16, "16 characters long; it needs at least 32"),
        ("Secret-key-31-characters-long!!", "31 characters long"),
        ("a" * 40, "repeats itself"),
        ("0123456789abcdef" * 2, "repeats itself"),
        ("ab" * 10 + "ba" * 10, "only 2 different characters"),
        ("31415926535897932384626433832795", "about 106 bits"),  # digits only: 3.3 bits each
    ],
)
def test_a_secret_key_that_can_be_guessed_is_refused_with_how_to_make_one(key: str, says: str, config: Path) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(config, secret_key=key)
    message = str(info.value)
    assert "DIGEST_SECRET_KEY: secret_key" in message and says in message and HOW_TO_MAKE_ONE in message
    assert key not in message  # the secret itself is never echoed


@pytest.mark.parametrize(
    "key",
    [
        "e5pIfxRbr_v6VKzzYQvScBREIYqRekPPV5X345Cmjoo",  # secrets.token_urlsafe(32)
        "55d0123be54dd8981b56094ecce165e8",  # secrets.token_hex(16), openssl rand -hex 16
        "e6eb5ce97f69352ac69ef4a39d3465d4266eff9fea9144728b6a5a30513a2772",  # secrets.token_hex(32)
        "test-secret-key-0123456789abcdef",  # the test suite's own
    ],
)
def test_random_secret_keys_are_accepted(key: str, config: Path) -> None:
    assert load_settings(config, secret_key=key).require_secret_key() == key


def test_commands_refuse_to_start_with_a_16_character_secret(workspace: Workspace) -> None:
    workspace.env["DIGEST_SECRET_KEY"] = "aaaaaaaaaaaaaaaa"
    for command in (["check"], ["send", "--dry-run", "out"]):
        result = workspace.run(*command, check=False)
        assert result.returncode == 78, result.stdout + result.stderr
        assert "secret_key" in result.stderr and HOW_TO_MAKE_ONE in result.stderr
        assert "Traceback" not in result.stderr
    assert not (workspace.root / "out").exists()
