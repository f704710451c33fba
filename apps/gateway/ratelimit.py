"""Token-bucket rate limits in Redis: the global ceiling, per API key, per end user and per
client address (requests whose caller is unknown or does not check out, apps.gateway.budgets).

One Lua script checks every bucket a request falls in and takes a token from each only if all
have one, so a refused request costs no bucket anything, and two web processes can never both
take the last token. Time is Redis's own clock (TIME), the same for every host.

A refusal says how long until the scarcest bucket has a token again; until then nobody can take
one, so the process refuses requests that fall in that bucket itself, without asking Redis: a
flood past a limit costs no round trip per request, and the limits stay exact.
"""

import hashlib
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from apps.applications.models import ApiKey, App
from apps.core.errors import RateLimitError
from apps.core.redis import LuaScript, async_client, key

# KEYS: bucket hashes {level, at}; ARGV: rate, burst for each key in turn.
# Returns {1, "0"} when every bucket gave a token, else {0, seconds until the scarcest refills,
# index of that bucket}.
_TAKE = LuaScript(
    """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local levels = {}
local wait, scarce = 0, 0
for i = 1, #KEYS do
  local rate, burst = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local state = redis.call('HMGET', KEYS[i], 'level', 'at')
  local level, at = tonumber(state[1]), tonumber(state[2])
  if level == nil or at == nil then
    level, at = burst, now
  end
  level = math.min(burst, level + math.max(0, now - at) * rate)
  levels[i] = level
  if level < 1 and (1 - level) / rate > wait then
    wait, scarce = (1 - level) / rate, i
  end
end
if scarce > 0 then
  return {0, tostring(wait), scarce}
end
for i = 1, #KEYS do
  local rate, burst = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  redis.call('HSET', KEYS[i], 'level', tostring(levels[i] - 1), 'at', tostring(now))
  redis.call('PEXPIRE', KEYS[i], math.ceil(burst / rate * 1000) + 1000)
end
return {1, '0', 0}
"""
)


@dataclass(frozen=True)
class Bucket:
    """One limit: `rate` tokens per second, holding at most `burst`."""

    key: str
    rate: float
    burst: int
    reason: str  # for metrics: which limit refused
    label: str  # for the client: whose limit it is


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after_s: float = 0.0
    bucket: Bucket | None = None


def _bucket(
    name: str, rate: float | None, burst: int | None, reason: str, label: str
) -> Bucket | None:
    if not rate or rate <= 0:
        return None
    return Bucket(
        key=key("ratelimit", name),
        rate=float(rate),
        burst=int(burst) if burst else max(1, math.ceil(rate)),
        reason=reason,
        label=label,
    )


def global_bucket() -> Bucket | None:
    config = settings.GATEWAY
    return _bucket(
        "global",
        config["GLOBAL_RATE_LIMIT_PER_S"],
        config["GLOBAL_RATE_LIMIT_BURST"],
        "rate_global",
        "the platform",
    )


def anonymous_bucket(address: str) -> Bucket | None:
    """Requests that name no caller, or one that does not check out, per client address
    (hashed: any text fits a key)."""
    config = settings.GATEWAY
    digest = hashlib.sha256(address.encode("utf-8", "replace")).hexdigest()[:32]
    return _bucket(
        f"anon:{digest}",
        config["ANON_RATE_LIMIT_PER_S"],
        config["ANON_RATE_LIMIT_BURST"],
        "rate_anonymous",
        "requests from your address without a valid key",
    )


def key_bucket(api_key: ApiKey) -> Bucket | None:
    """The key's own limit, else its app's, else the platform default."""
    app: App = api_key.app
    if api_key.rate_limit_per_s is not None:
        rate, burst = api_key.rate_limit_per_s, api_key.rate_limit_burst
    elif app.rate_limit_per_s is not None:
        rate, burst = app.rate_limit_per_s, app.rate_limit_burst
    else:
        rate = settings.GATEWAY["KEY_RATE_LIMIT_PER_S"]
        burst = settings.GATEWAY["KEY_RATE_LIMIT_BURST"]
    return _bucket(f"key:{api_key.id}", rate, burst, "rate_key", "this API key")


def user_bucket(app: App, end_user: str) -> Bucket | None:
    if app.user_rate_limit_per_s is not None:
        rate, burst = app.user_rate_limit_per_s, app.user_rate_limit_burst
    else:
        rate = settings.GATEWAY["USER_RATE_LIMIT_PER_S"]
        burst = settings.GATEWAY["USER_RATE_LIMIT_BURST"]
    # Hashed: end-user ids are free text and must not shape Redis key names.
    digest = hashlib.sha256(end_user.encode()).hexdigest()[:32]
    return _bucket(f"user:{app.id}:{digest}", rate, burst, "rate_user", "this user")


def request_buckets(api_key: ApiKey, end_user: str | None) -> list[Bucket]:
    """The budgets a valid caller's request spends: the platform's ceiling, its key's, and its
    end user's."""
    buckets = [global_bucket(), key_bucket(api_key)]
    if end_user:
        buckets.append(user_bucket(api_key.app, end_user))
    return [bucket for bucket in buckets if bucket is not None]


def _args(buckets: list[Bucket]) -> list[Any]:
    args: list[Any] = []
    for bucket in buckets:
        args += [repr(bucket.rate), bucket.burst]
    return args


def _verdict(buckets: list[Bucket], reply: Any) -> Verdict:
    allowed, wait, scarce = int(reply[0]), float(reply[1]), int(reply[2])
    if allowed:
        return Verdict(True)
    return Verdict(False, wait, buckets[scarce - 1])


class EmptyBuckets:
    """Buckets this process knows to be empty, and until when (monotonic clock)."""

    LIMIT = 10_000  # entries kept; a flood of distinct users cannot grow it further

    def __init__(self) -> None:
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def refused(self, buckets: list[Bucket]) -> Verdict | None:
        """A refusal for a bucket known empty, without asking Redis; None otherwise."""
        if not self._until:
            return None
        now = time.monotonic()
        for bucket in buckets:
            until = self._until.get(bucket.key)
            if until is not None and until > now:
                return Verdict(False, until - now, bucket)
        return None

    def remember(self, verdict: Verdict) -> None:
        if verdict.allowed or verdict.bucket is None:
            return
        now = time.monotonic()
        with self._lock:
            if len(self._until) >= self.LIMIT:
                self._until = {key: at for key, at in self._until.items() if at > now}
                if len(self._until) >= self.LIMIT:
                    self._until.clear()
            self._until[verdict.bucket.key] = now + verdict.retry_after_s

    def forget(self) -> None:
        with self._lock:
            self._until = {}


_empty = EmptyBuckets()


def rate_limits_forget() -> None:
    """Forget which buckets this process knows to be empty (their Redis state was reset)."""
    _empty.forget()


def known_refusal(buckets: list[Bucket]) -> Verdict | None:
    """A refusal this process can give now, without asking Redis: one of the buckets is known to
    be empty. None otherwise (the bucket may have tokens)."""
    return _empty.refused(buckets)


async def take_async(buckets: list[Bucket]) -> Verdict:
    """Take one token from every bucket, or from none (see the module docstring)."""
    if not buckets:
        return Verdict(True)
    known = _empty.refused(buckets)
    if known is not None:
        return known
    reply = await _TAKE.run(async_client(), [b.key for b in buckets], _args(buckets))
    verdict = _verdict(buckets, reply)
    _empty.remember(verdict)
    return verdict


def refusal(verdict: Verdict) -> RateLimitError:
    """The 429 for a refused request, with the seconds to wait in Retry-After."""
    bucket = verdict.bucket
    assert bucket is not None
    retry_after = max(1, math.ceil(verdict.retry_after_s))
    return RateLimitError(
        f"Rate limit exceeded for {bucket.label}: {bucket.rate:g} requests per second "
        f"(burst {bucket.burst}). Retry after {retry_after} s.",
        headers={"Retry-After": str(retry_after)},
    )
