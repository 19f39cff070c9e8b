"""Exit codes a cron job can trust, and one-line warnings for the defaults a new user has not changed yet."""

from __future__ import annotations

from tests.conftest import Workspace

NOW = "2026-11-23T08:00:00+08:00"
NEXT_WEEK = "2026-11-30T08:00:00+08:00"
BROKEN = "## Broken\nno link here\n\n摘要\n"
LOCALHOST_WARNING = (
    "digest: warning: site_url is still the default http://localhost:8000/:"
    " set site_url (DIGEST_SITE_URL) to the public URL"
)


def test_a_render_that_published_exits_0_and_still_prints_the_skipped_entry(workspace: Workspace) -> None:
    workspace.add_seed("999_bad.md", BROKEN)
    result = workspace.run("render", "--now", NOW, check=False)
    assert result.returncode == 0, result.stderr
    assert "published issue 1 with 23 papers" in result.stdout
    assert "seeds/999_bad.md:2:" in result.stderr and "[invalid]" in result.stderr


def test_a_render_that_could_publish_nothing_because_of_errors_exits_1(workspace: Workspace) -> None:
    workspace.run("render", "--now", NOW)
    workspace.add_seed("999_bad.md", BROKEN)
    result = workspace.run("render", "--now", NEXT_WEEK, check=False)
    assert result.returncode == 1
    assert "nothing new" in result.stdout and "seeds/999_bad.md:2:" in result.stderr


def test_a_week_with_nothing_new_and_no_error_exits_0(workspace: Workspace) -> None:
    workspace.run("render", "--now", NOW)
    assert workspace.run("render", "--now", NEXT_WEEK).returncode == 0


def test_render_warns_in_one_line_while_site_url_is_the_localhost_default(workspace: Workspace) -> None:
    del workspace.env["DIGEST_SITE_URL"]
    result = workspace.run("render", "--dry-run")
    assert result.stderr.splitlines() == [LOCALHOST_WARNING]
    workspace.env["DIGEST_SITE_URL"] = "https://news.example.org/"
    assert "site_url" not in workspace.run("render", "--dry-run").stderr


def test_run_once_warns_too(workspace: Workspace) -> None:
    del workspace.env["DIGEST_SITE_URL"]
    result = workspace.run("run", "--once", "--now", NOW, check=False)
    assert LOCALHOST_WARNING in result.stderr.splitlines()


def test_send_warns_without_a_postal_address_or_with_a_localhost_sender(workspace: Workspace) -> None:
    workspace.run("render", "--now", NOW)
    workspace.run("subscribers", "add", "reader@example.org")
    result = workspace.run("send", "--dry-run", str(workspace.root / "out"))
    warnings = [line for line in result.stderr.splitlines() if line.startswith("digest: warning: ")]
    assert len(warnings) == 2, result.stderr
    assert warnings[0].startswith("digest: warning: sender_address is empty: ")
    assert warnings[1].startswith("digest: warning: from_address is 'digest@localhost': ")
    workspace.env["DIGEST_SENDER_ADDRESS"] = "1 Example Road, Beijing"
    workspace.env["DIGEST_FROM_ADDRESS"] = "Weekly <digest@example.org>"
    quiet = workspace.run("send", "--dry-run", str(workspace.root / "again"))
    assert "digest: warning" not in quiet.stderr


def test_serve_warns_before_it_starts(workspace: Workspace) -> None:
    import socket

    del workspace.env["DIGEST_SITE_URL"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = workspace.popen("serve", "--port", str(port))
    try:
        assert server.stderr is not None
        assert server.stderr.readline().rstrip("\n") == LOCALHOST_WARNING
    finally:
        server.terminate()
        server.communicate(timeout=30)
