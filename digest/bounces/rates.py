"""Bounce and complaint rates of an issue, and whether they pass the limits mail providers enforce. Pure.

Gmail and Yahoo throttle, then block, a sender whose hard-bounce rate passes about 1 % or whose complaint rate
passes 0.1 % (the defaults of `max_hard_bounce_rate` and `max_complaint_rate`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class IssueRates:
    """What happened to the messages of one issue that went out (or were refused at once)."""

    issue: int
    mailed: int  # messages handed to the server (sent, refused, bounced, complained about, unknown)
    hard: int
    soft: int
    complained: int

    @property
    def delivered(self) -> int:
        """Messages that went out and did not bounce."""
        return self.mailed - self.hard - self.soft

    def rate(self, count: int) -> float:
        """`count` as a share of the messages mailed."""
        return count / self.mailed if self.mailed else 0.0

    def describe(self) -> str:
        """One line for `digest status`."""
        return (
            f"{self.mailed} mailed: {self.delivered} delivered, {self.hard} hard-bounced ({self.rate(self.hard):.2%}),"
            f" {self.soft} soft-bounced ({self.rate(self.soft):.2%}),"
            f" {self.complained} complained ({self.rate(self.complained):.2%})"
        )


def over_limits(rates: IssueRates, max_hard: float, max_complaints: float) -> list[str]:
    """Why an issue's rates are a danger to the sender's reputation (empty when they are not)."""
    problems = []
    if rates.rate(rates.hard) > max_hard:
        problems.append(
            f"issue {rates.issue} hard-bounced {rates.rate(rates.hard):.2%} ({rates.hard} of {rates.mailed}),"
            f" over max_hard_bounce_rate {max_hard:.2%}"
        )
    if rates.rate(rates.complained) > max_complaints:
        problems.append(
            f"issue {rates.issue} drew {rates.rate(rates.complained):.2%} complaints ({rates.complained} of"
            f" {rates.mailed}), over max_complaint_rate {max_complaints:.2%}"
        )
    return problems
