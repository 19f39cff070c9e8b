"""The webhook settings as a user meets them: secrets only from the environment, keys checked when read, exit 78."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest.errors import SettingsError
from digest.settings import load_settings
from tests.conftest import Workspace
from tests.webhook_util import SendGridSigner


@pytest.mark.parametrize("name", ["webhook_secret", "mailgun_signing_key"])
def test_a_webhook_secret_in_the_config_file_is_refused(tmp_path: Path, name: str) -> None:
    config = tmp_path / "digest.toml"
    config.write_text(f'{name} = "s3cret-Value-that-must-not-leak-0123456789"\n', encoding="utf-8")
    with pytest.raises(SettingsError) as info:
        load_settings(config)
    message = str(info.value)
    assert f"{name} must not be stored in the config file" in message and f"DIGEST_{name.upper()}" in message
    assert "s3cret-Value-that-must-not-leak-0123456789" not in message


def test_a_sendgrid_key_that_is_no_ec_public_key_stops_serve_with_exit_78(workspace: Workspace) -> None:
    workspace.env["DIGEST_SENDGRID_PUBLIC_KEY"] = "bm90IGEga2V5"  # base64 of "not a key"
    result = workspace.run("serve", "--port", "1", check=False)
    assert result.returncode == 78 and "Traceback" not in result.stderr
    assert "sendgrid_public_key" in result.stderr and "not a base64 DER public key" in result.stderr


def test_the_keys_as_the_providers_show_them_are_accepted(tmp_path: Path) -> None:
    config = tmp_path / "digest.toml"
    signer = SendGridSigner()
    config.write_text(
        f'sendgrid_public_key = "{signer.public_key}"\n'
        'ses_topic_arns = ["arn:aws:sns:eu-west-1:123456789012:ses-bounces"]\n',
        encoding="utf-8",
    )
    settings = load_settings(config)
    assert settings.sendgrid_public_key == signer.public_key
    assert settings.sns_test_ca_file is None  # the test-only loopback allowance is off unless set
    with pytest.raises(SettingsError, match="ses_topic_arns"):
        load_settings(config, ses_topic_arns=["https://sns.example/not-an-arn"])


def test_a_webhook_secret_that_can_be_guessed_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "digest.toml"
    config.write_text("", encoding="utf-8")
    with pytest.raises(SettingsError) as info:
        load_settings(config, webhook_secret="postmark")
    assert "webhook_secret" in str(info.value) and "it needs at least 32" in str(info.value)
    assert "postmark" not in str(info.value).replace("DIGEST_WEBHOOK_SECRET", "")
