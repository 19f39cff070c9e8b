"""Chinese drafts from an OpenAI-compatible Chat Completions server (the `[llm]` settings), through the `openai`
package. Every answer is checked (digest.glossary.check_answer) before it is used; a refused one is asked again
once with the reason; answers are cached in the state, keyed by model and messages, so nothing is paid twice."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import jinja2
import openai

from digest.arxiv_api import ArxivPaper
from digest.glossary import Answer, Glossary, check_answer, parse_answer
from digest.settings import LlmSettings

__all__ = ["CACHE_PREFIX", "ModelDraft", "Translator"]

CACHE_PREFIX = "llm_answer:"  # meta rows of the state: key = model + messages, value = the answer's text
TARGET_CHARS = 330


@dataclass(frozen=True)
class ModelDraft:
    """The outcome for one paper: the checked answer, or the reasons it was refused (never a guessed text)."""

    answer: Answer | None
    problems: tuple[str, ...] = ()
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class _Exchange:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    new_answers: dict[str, str] = field(default_factory=dict)


class Translator:
    """Asks the model for `title_zh` and `abstract_zh` per paper, `concurrency` papers at a time."""

    def __init__(
        self,
        settings: LlmSettings,
        env: jinja2.Environment,
        glossary: Glossary,
        cached: dict[str, str],
        *,
        refresh: bool = False,
    ) -> None:
        self.settings = settings
        self.env = env
        self.glossary = glossary
        self.cached = {} if refresh else cached
        self.client = openai.OpenAI(
            base_url=settings.base_url,
            api_key=settings.api_key.get_secret_value() or "none",  # local servers (Ollama) want any key
            timeout=settings.timeout,
            max_retries=2,  # the package retries 429/5xx/timeouts with backoff, honouring Retry-After
        )

    def messages(self, paper: ArxivPaper) -> list[dict[str, str]]:
        """The system and user prompts (templates/draft_system.txt.j2 and draft_user.txt.j2) for one paper."""
        terms = self.glossary.in_text(f"{paper.title}\n{paper.abstract}")
        system = self.env.get_template("draft_system.txt.j2").render(glossary=terms, target_chars=TARGET_CHARS)
        user = self.env.get_template("draft_user.txt.j2").render(title=paper.title, abstract=paper.abstract)
        return [{"role": "system", "content": system.strip()}, {"role": "user", "content": user.strip()}]

    def cache_key(self, messages: Sequence[dict[str, str]]) -> str:
        payload = json.dumps([self.settings.model, list(messages)], ensure_ascii=False, sort_keys=True)
        return CACHE_PREFIX + hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def translate_all(
        self, papers: Sequence[ArxivPaper], done: Callable[[ArxivPaper, ModelDraft], None]
    ) -> tuple[dict[str, ModelDraft], dict[str, str]]:
        """Every paper's draft (calling `done` as each finishes) and the new answers to cache."""
        results: dict[str, ModelDraft] = {}
        new: dict[str, str] = {}
        with ThreadPoolExecutor(max_workers=self.settings.concurrency) as pool:
            futures = {paper.id: pool.submit(self._translate, paper) for paper in papers}
            for paper in papers:
                draft, exchange = futures[paper.id].result()
                results[paper.id] = draft
                new.update(exchange.new_answers)
                done(paper, draft)
        return results, new

    def _translate(self, paper: ArxivPaper) -> tuple[ModelDraft, _Exchange]:
        exchange = _Exchange()
        messages = self.messages(paper)
        reasons: list[str] = []
        for attempt in range(2):
            try:
                text = self._ask(messages, exchange)
            except openai.APIError as exc:
                return ModelDraft(
                    None, (f"the model could not be asked: {_describe(exc)}",), **_usage(exchange)
                ), exchange
            parsed = parse_answer(text)
            reasons = (
                [parsed]
                if isinstance(parsed, str)
                else check_answer(parsed, paper.title, paper.abstract, self.glossary)
            )
            if not reasons and not isinstance(parsed, str):
                return ModelDraft(parsed, (), **_usage(exchange)), exchange
            if attempt == 0:
                messages = [
                    *messages,
                    {"role": "assistant", "content": text},
                    {
                        "role": "user",
                        "content": "这个回答不合格：" + "; ".join(reasons) + "。请改正后重新回答，只输出 JSON 对象。",
                    },
                ]
        return ModelDraft(
            None, ("the model's answer was refused twice: " + "; ".join(reasons),), **_usage(exchange)
        ), exchange

    def _ask(self, messages: list[dict[str, str]], exchange: _Exchange) -> str:
        key = self.cache_key(messages)
        if key in self.cached:
            return self.cached[key]
        exchange.requests += 1
        response = self.client.chat.completions.create(  # type: ignore[call-overload]  # plain dict messages
            model=self.settings.model,
            messages=messages,
            response_format={"type": "json_object"},
            temperature=0.2,
        )
        if response.usage is not None:
            exchange.prompt_tokens += response.usage.prompt_tokens
            exchange.completion_tokens += response.usage.completion_tokens
        text = (response.choices[0].message.content or "") if response.choices else ""
        exchange.new_answers[key] = text
        self.cached[key] = text
        return text


def _usage(exchange: _Exchange) -> dict[str, int]:
    return {
        "requests": exchange.requests,
        "prompt_tokens": exchange.prompt_tokens,
        "completion_tokens": exchange.completion_tokens,
    }


def _describe(exc: openai.APIError) -> str:
    if isinstance(exc, openai.APITimeoutError):
        return "no answer within the timeout (llm.timeout)"
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}"
    if isinstance(exc, openai.APIConnectionError):
        return "cannot connect (llm.base_url)"
    return type(exc).__name__
