"""Scenario 5m (issue 19): `digest send` against a real MTA, a throwaway Postfix (tests/postfix_util.py) with
STARTTLS, every transport `discard:`, next to the bare smtplib loops: one reused connection per worker (the
ceiling) and one connection per message (a naive sender). The three run interleaved (A, B, C, A, B, C ...) so
that the machine's load hits them alike; each row gives the median msg/s with the spread and the CPU seconds the
client process used (user + system, from wait4), Postfix's own CPU not counted.

aiosmtpd (scenario 5) is slower than the clients it measures, which hides their cost; Postfix is not.
"""

from __future__ import annotations

import shutil
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import run  # the suite's helpers (run.py registers itself under this name)

QUICK_MESSAGES = 300
FULL_MESSAGES = 2_000


def _spread(values: list[float]) -> str:
    return f"{min(values):,.0f}-{max(values):,.0f}"


def postfix_send(base: Path, sizes: run.Sizes, log: Callable[[str], None], workers: int) -> list[run.Row]:
    """5m. `digest send` of N messages through Postfix + STARTTLS against the bare loops, interleaved."""
    sys.path.insert(0, str(run.HERE.parent))
    from tests.postfix_util import Postfix, find_postfix, self_signed_cert

    n = FULL_MESSAGES if sizes.subscribers >= FULL_MESSAGES else QUICK_MESSAGES
    size = f"{run.fmt_size(n)} messages, {workers} connections"
    if find_postfix() is None:
        return [
            run.Row("5m Postfix", size, measured="not run", note="Postfix is not installed (apt-get install postfix)")
        ]
    ws = run.Workspace(
        base / "postfix-send",
        DIGEST_SMTP__HOST="127.0.0.1",
        DIGEST_SMTP__SECURITY="starttls",
        DIGEST_SMTP__VERIFY_TLS="false",
        DIGEST_SECRET_KEY="benchmark-secret-key-0123456789abcdef",
        DIGEST_SMTP_CONNECTIONS=str(workers),
        DIGEST_MAX_MESSAGES_PER_SECOND="1000000",
        DIGEST_FROM_ADDRESS="Paper Digest <digest@localhost>",
    )
    run.corpus.write_corpus(ws.seeds, 10)
    ws.digest("render", "--now", run.iso(run.FIRST_ISSUE))
    addresses = ws.root / "subscribers.csv"
    addresses.write_text("email,name\nreader0@example.org,Reader 0\n")
    ws.digest("subscribers", "import", str(addresses))
    message = ws.root / "message.eml"
    message.write_bytes(run._sample_message(ws, 1))
    addresses.write_text("email,name\n" + "".join(f"reader{i}@example.org,Reader {i}\n" for i in range(n)))
    ws.digest("subscribers", "import", str(addresses))
    fresh = base / "postfix-send-state"
    shutil.copytree(ws.root / "state", fresh)

    cert, key = self_signed_cert(ws.root)
    log("  starting a throwaway Postfix (STARTTLS, every transport discard:)")
    postfix = Postfix.start(cert=cert, key=key)
    ws.env["DIGEST_SMTP__PORT"] = str(postfix.port)
    naive_n = max(n // 10, 30)  # one TLS handshake each: slow, fewer do
    send_args = ["send", "--issue", "1"]
    results: dict[str, list[run.Run]] = {"reuse": [], "naive": [], "digest": [], "again": []}
    delivered = 0
    try:
        for i in range(sizes.repeats):
            log(f"  Postfix round {i + 1}/{sizes.repeats}: bare reuse, naive, digest send ({run.fmt_size(n)} msgs)")
            for mode, count in (("reuse", n), ("naive", naive_n)):
                results[mode].append(
                    ws.python("smtp_load.py", "--port", str(postfix.port), "--messages", str(count), "--workers",
                              str(workers), "--mode", mode, "--message", str(message), "--starttls")
                )  # fmt: skip
                delivered += count
            shutil.rmtree(ws.root / "state")
            shutil.copytree(fresh, ws.root / "state")
            sent = ws.digest(*send_args)
            if f"issue 1: {n:,} sent," not in sent.stdout:  # the counts are printed with separators
                raise run.ScenarioError(f"digest send did not send {n} messages: {sent.stdout}{sent.stderr[-2000:]}")
            results["digest"].append(sent)
            results["again"].append(ws.digest(*send_args))  # nothing to do: start-up and ledger reads
            delivered += n
        got = postfix.wait_for_log(" status=sent ", delivered, seconds=120)
        if got != delivered:
            raise run.ScenarioError(f"Postfix delivered {got} of {delivered} messages")
    finally:
        postfix.stop()

    def rates(mode: str, count: int) -> list[float]:
        return [count / r.wall for r in results[mode]]

    def cpu(mode: str) -> float:
        return statistics.median(r.cpu for r in results[mode])

    reuse, naive, ours = rates("reuse", n), rates("naive", naive_n), rates("digest", n)
    again_cpu = cpu("again")
    # Without start-up: each send's wall less the nothing-to-do send that followed it (same load, seconds apart).
    net = [n / max(r.wall - a.wall, 1e-3) for r, a in zip(results["digest"], results["again"], strict=True)]
    rows = [
        run.Row("5m Postfix: digest send", size, statistics.median(r.wall for r in results["digest"]),
                max(r.rss_mb for r in results["digest"]), f"{statistics.median(ours):,.0f} msg/s ({_spread(ours)})",
                runs=[r.wall for r in results["digest"]],
                note=f"durable ledger; CPU {cpu('digest'):.2f} s (a send with nothing to do: {again_cpu:.2f} s); "
                f"process start included; without it {statistics.median(net):,.0f} msg/s ({_spread(net)})"),
        run.Row("5m Postfix: bare smtplib reused", size, statistics.median(r.wall for r in results["reuse"]),
                max(r.rss_mb for r in results["reuse"]), f"{statistics.median(reuse):,.0f} msg/s ({_spread(reuse)})",
                runs=[r.wall for r in results["reuse"]], note=f"records nothing; CPU {cpu('reuse'):.2f} s"),
        run.Row("5m Postfix: one connection/message", f"{run.fmt_size(naive_n)} messages, {workers} workers",
                statistics.median(r.wall for r in results["naive"]), max(r.rss_mb for r in results["naive"]),
                f"{statistics.median(naive):,.0f} msg/s ({_spread(naive)})", runs=[r.wall for r in results["naive"]],
                note=f"CPU {cpu('naive'):.2f} s"),
    ]  # fmt: skip
    ratio = statistics.median(ours) / statistics.median(reuse)
    note = (
        f"CPU {cpu('digest') / cpu('reuse'):.2f}x the bare loop's; without digest's start-up"
        f" {statistics.median(net) / statistics.median(reuse):.0%}"
    )
    rows.append(
        run.Row("5m Postfix: send vs bare reused", size, measured=f"{ratio:.0%}", target=">= 85%", ok=ratio >= 0.85,
                note=note)
    )  # fmt: skip
    rows.append(
        run.Row(
            "5m Postfix: send vs naive", size, measured=f"{statistics.median(ours) / statistics.median(naive):.1f}x"
        )
    )
    return rows
