"""Typed errors of the service; `mixer.api.status` maps them to gRPC status codes in one place."""

from __future__ import annotations


class MixerError(Exception):
    """Base of every error the service raises on purpose."""


class BadRequest(MixerError):
    """The caller sent something malformed (gRPC INVALID_ARGUMENT)."""


class DictionaryMismatch(MixerError):
    """The caller uses more global words than we know (gRPC INTERNAL, as Istio's clients expect)."""

    def __init__(self, ours: int, theirs: int) -> None:
        super().__init__(
            "inconsistent global dictionary versions used: "
            f"mixer knows {ours} words, caller knows {theirs}"
        )
        self.ours = ours
        self.theirs = theirs


class LimitExceeded(MixerError):
    """A request crossed a configured bound (gRPC RESOURCE_EXHAUSTED).

    `limit` names the bound (its `mixer serve` flag without dashes), the label under which
    the crossing is counted in ``mixer_limit_exceeded_total``.
    """

    def __init__(self, message: str, limit: str = "request") -> None:
        super().__init__(message)
        self.limit = limit


class DispatchError(MixerError):
    """An instance could not be built or a handler failed (gRPC INTERNAL)."""


class BackendUnavailable(MixerError):
    """A backend the answer needs is unreachable and the policy is to fail closed (UNAVAILABLE)."""


class NotConfigured(MixerError):
    """The API has no config to answer from (gRPC UNKNOWN, as envoyproxy/ratelimit answers
    before its first config load)."""


class ConfigError(MixerError):
    """A config directory or file is invalid; `errors` lists every problem found."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors) if errors else "invalid configuration")
        self.errors = errors


class MalformedMessage(BadRequest):
    """A request's bytes are not a valid message of its type: corrupt wire format, or a string
    field that is not UTF-8 (gRPC INVALID_ARGUMENT, logged as one line)."""
