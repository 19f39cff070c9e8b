"""A fake OpenAI-compatible server on loopback (`POST /v1/chat/completions`) whose answers follow a script: a good
Chinese translation (with every glossary target the prompt asks for, the LaTeX and links of the abstract), English
only, a glossary violation, broken JSON, a chatty preamble, seed structure, slowly, or HTTP 429/500."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_TERM = re.compile(r"^\s*- (.+?) -> (.+?)\s*$", re.MULTILINE)
_LATEX = re.compile(r"\$[^$\n]+\$")
_URL = re.compile(r"https?://[^\s)\]>\"'，。；]+")


@dataclass
class FakeModel:
    """`script` is consumed one step per request; when empty, `default` answers."""

    script: list[str] = field(default_factory=list)
    default: str = "good"
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""


def _good(system: str, user: str, *, glossary: bool = True) -> dict[str, str]:
    title = user.split("\n", 1)[0].removeprefix("Title: ")
    abstract = user.partition("Abstract: ")[2]
    terms = [t for _, t in _TERM.findall(system)] if glossary else ["法学硕士"]
    kept = [m for m in _LATEX.findall(abstract)] + [u.rstrip(".,;") for u in _URL.findall(abstract)]
    words = "".join(f"{t}，" for t in terms)
    body = "本文提出一种新方法，" + words + "并在多个基准上验证了其有效性。" * max(1, len(abstract) // 60)
    return {"title_zh": f"关于{title[:12]}的中文标题", "abstract_zh": body + " ".join(kept)}


def answer_text(step: str, messages: list[dict[str, str]]) -> str:
    system = next((m["content"] for m in messages if m["role"] == "system"), "")
    user = next((m["content"] for m in messages if m["role"] == "user"), "")
    if step == "english":
        return json.dumps({"title_zh": "A study in English", "abstract_zh": "We propose a method. " * 20})
    if step == "glossary":
        return json.dumps(_good(system, user, glossary=False), ensure_ascii=False)
    if step == "broken":
        return '{"title_zh": "标题", "abstract_zh": "没有结束'
    if step == "preamble":
        good = _good(system, user)
        return json.dumps({**good, "abstract_zh": "好的，以下是翻译：" + good["abstract_zh"]}, ensure_ascii=False)
    if step == "structure":
        good = _good(system, user)
        hostile = good["abstract_zh"] + "\n\n## 注入的标题\n\nStatus: draft\n\n<!-- \x1b[31m"
        return json.dumps({**good, "abstract_zh": hostile}, ensure_ascii=False)
    return "好的！" + json.dumps(_good(system, user), ensure_ascii=False)  # JSON after chatter: still found


@contextmanager
def serve_model(fake: FakeModel) -> Iterator[FakeModel]:
    """Run the fake on 127.0.0.1 for the `with` block; `fake.url` is its base URL (…/v1)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            fake.requests.append(body)
            step = fake.script.pop(0) if fake.script else fake.default
            if step.startswith("slow:"):
                time.sleep(float(step.split(":")[1]))
                step = "good"
            if step in ("429", "500"):
                data = json.dumps({"error": {"message": "busy", "type": "server_error"}}).encode()
                self.send_response(int(step))
                self.send_header("Retry-After", "0")
            else:
                content = answer_text(step, body["messages"])
                prompt = sum(len(m["content"]) for m in body["messages"])
                data = json.dumps(
                    {
                        "id": f"chatcmpl-{len(fake.requests)}",
                        "object": "chat.completion",
                        "created": 1765000000,
                        "model": body["model"],
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": content},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {
                            "prompt_tokens": prompt // 3,
                            "completion_tokens": len(content) // 2,
                            "total_tokens": prompt // 3 + len(content) // 2,
                        },
                    },
                    ensure_ascii=False,
                ).encode()
                self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            with suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
