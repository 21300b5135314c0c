"""Enqueue-once claims: one Redis key per event id, taken before enqueueing.

Live delivery and journal replay, or two bridges side by side, see the same
event more than once; only the holder of its claim enqueues it. A claim is
first *pending* (our token, short TTL) and becomes *done* once the broker has
the task. A bridge that dies between the two leaves a pending claim that
expires, so the journal replay can still enqueue the event; a bridge retrying
its own failed batch finds its own token and goes ahead.

Confirmations ride along with the next batch's claims (one Lua call, one
round trip per batch); :meth:`Claims.flush` sends them alone when the bridge
goes idle or stops.
"""

from __future__ import annotations

import secrets

from ..journal import claim_key

# KEYS: the keys to confirm, then the keys to claim.
# ARGV: token, pending TTL, done TTL, how many of KEYS are confirmations.
# Returns 1 for each claimed key this bridge holds, 0 where another does.
_CLAIM = """
local n_confirm = tonumber(ARGV[4])
for i = 1, n_confirm do
  redis.call('SET', KEYS[i], 'done', 'EX', ARGV[3])
end
local out = {}
for i = n_confirm + 1, #KEYS do
  if redis.call('SET', KEYS[i], ARGV[1], 'NX', 'EX', ARGV[2]) then
    out[#out + 1] = 1
  elseif redis.call('GET', KEYS[i]) == ARGV[1] then
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
"""


class Claims:
    """One per bridge process, kept across reconnects: its token is how a batch
    that failed mid-enqueue recognises its own pending claims when retried."""

    def __init__(self, pending_ttl: int, done_ttl: int):
        self.token = secrets.token_hex(8)
        self.pending_ttl = pending_ttl
        self.done_ttl = done_ttl
        self._script = None
        self._to_confirm: list[str] = []

    def bind(self, client) -> None:
        """Use ``client`` (a fresh connection after a reconnect) from now on."""
        self._script = client.register_script(_CLAIM)

    def take(self, event_ids: list[str]) -> list[bool]:
        """Try to claim each id; True where this bridge may enqueue it.
        Sends the confirmations waiting from the previous batch too."""
        if not event_ids and not self._to_confirm:
            return []
        confirm = [claim_key(i) for i in self._to_confirm]
        keys = confirm + [claim_key(i) for i in event_ids]
        result = self._script(keys=keys, args=[self.token, self.pending_ttl, self.done_ttl, len(confirm)])
        self._to_confirm = []
        return [bool(x) for x in result]

    def confirm(self, event_ids: list[str]) -> None:
        """Mark ids as enqueued (for ``done_ttl``, longer than the journal's
        reach) with the next :meth:`take` or :meth:`flush`."""
        self._to_confirm.extend(event_ids)

    def flush(self) -> None:
        if self._to_confirm:
            self.take([])
