"""Login throttling and bounded password hashing for the review service.

Rate limits come from the `limits` library (moving windows; memory or Redis storage): every attempt
counts against the client's address and against the account named, before any password is checked; a
successful login clears its account's count. Over a limit, the caller answers 429 with Retry-After.

argon2id costs ~0.2 s of CPU and 64 MiB per check, so at most `login_concurrency` run at once, in
threads of their own (anyio's CapacityLimiter, apart from the threads that serve other requests); when
`login_queue` more are already waiting the login is refused at once (503) instead of piling up.
"""

from __future__ import annotations

import math
import time

from anyio import CapacityLimiter, to_thread
from limits import RateLimitItem, parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from moderation.errors import Busy, Throttled
from moderation.review.auth import verify_password
from moderation.review.settings import ReviewSettings


class LoginGate:
    def __init__(self, settings: ReviewSettings) -> None:
        self._limiter = MovingWindowRateLimiter(storage_from_string(settings.login_limits_storage))
        self._per_address: list[RateLimitItem] = parse_many(settings.login_limits_per_address)
        self._per_account: list[RateLimitItem] = parse_many(settings.login_limits_per_account)
        self._log_once = parse_many("1/minute")[0]  # a flood of refusals makes one log line a minute per key
        self._hashing = CapacityLimiter(settings.login_concurrency)
        self._queue = settings.login_queue

    def _retry_after(self, item: RateLimitItem, *key: str) -> int:
        reset = self._limiter.get_window_stats(item, *key).reset_time
        return max(1, math.ceil(reset - time.time()))

    def admit(self, address: str, account: str) -> None:
        """Count one login attempt; Throttled when the address or the account is over its limits."""
        for scope, items, ident in (
            ("address", self._per_address, address),
            ("account", self._per_account, account[:64]),
        ):
            for item in items:
                if not self._limiter.hit(item, scope, ident):
                    first = self._limiter.hit(self._log_once, "logged", scope, ident)
                    raise Throttled(scope, self._retry_after(item, scope, ident), first)

    def succeeded(self, account: str) -> None:
        """The right password was given: the account's count starts again (the address's does not)."""
        for item in self._per_account:
            self._limiter.clear(item, "account", account[:64])

    async def verify(self, password_hash: str, password: str) -> bool:
        """argon2id in a bounded pool of threads; Busy when too many checks are waiting already."""
        if self._hashing.statistics().tasks_waiting >= self._queue:
            raise Busy
        return await to_thread.run_sync(verify_password, password_hash, password, limiter=self._hashing)
