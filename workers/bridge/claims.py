"""Enqueue-once claims: one Redis key per event id, taken before enqueueing.

Live delivery and journal replay, or two bridges side by side, see the same
event more than once; only the holder of its claim enqueues it. A claim is
first *pending* (our token, short TTL) and becomes *done* once the broker has
the task. A bridge that dies between the two leaves a pending claim that
expires, so the journal replay can still enqueue the event; a bridge retrying
its own failed batch finds its own token and goes ahead.
"""

from __future__ import annotations

import secrets

from ..journal import claim_key

# One round trip for a whole batch. Returns 1 where the caller holds the claim.
_CLAIM = """
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('SET', key, ARGV[1], 'NX', 'EX', ARGV[2]) then
    out[i] = 1
  elseif redis.call('GET', key) == ARGV[1] then
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
"""

_CONFIRM = """
for _, key in ipairs(KEYS) do
  redis.call('SET', key, 'done', 'EX', ARGV[1])
end
return #KEYS
"""


class Claims:
    def __init__(self, client, pending_ttl: int, done_ttl: int):
        self.token = secrets.token_hex(8)
        self.pending_ttl = pending_ttl
        self.done_ttl = done_ttl
        self._claim = client.register_script(_CLAIM)
        self._confirm = client.register_script(_CONFIRM)

    def take(self, event_ids: list[str]) -> list[bool]:
        """Try to claim each id; True where this bridge may enqueue it."""
        if not event_ids:
            return []
        keys = [claim_key(i) for i in event_ids]
        return [bool(x) for x in self._claim(keys=keys, args=[self.token, self.pending_ttl])]

    def confirm(self, event_ids: list[str]) -> None:
        """Mark ids as enqueued for ``done_ttl`` (longer than the journal's reach)."""
        if event_ids:
            self._confirm(keys=[claim_key(i) for i in event_ids], args=[self.done_ttl])
