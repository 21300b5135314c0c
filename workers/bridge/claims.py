"""Enqueue-once claims: one Redis key per event id, taken before enqueueing.

Live delivery and journal replay, or two bridges side by side, see the same
event more than once; only the holder of its claim enqueues it. A claim is
first *pending* (``p|<token>|<digest>``, short TTL) and becomes *done*
(``d|<digest>``) once the broker has the task. The digest is the event's
content, so an id reused for another event is told apart from a re-send.

Taking a claim has four outcomes (:data:`MINE`, :data:`DONE`, :data:`HELD`,
or the other payload's digest for a conflict). ``HELD`` — pending under
another token — proves nothing: that bridge may be enqueueing the event right
now, or it may have died holding the claim. The bridge keeps such events and
asks again until the claim is done or has expired and it can take it itself.

Taking a new claim also appends the event to ``eclean:accepted:<topic>``, in
the same Lua call: every event a bridge accepted, whether it came from the
publisher's journal or from a plain ``PUBLISH``, is then on record for the
audit (workers/bridge/audit.py), which re-enqueues one that never had an
effect. One round trip per batch still does it all.

Confirmations ride along with the next batch's claims; :meth:`Claims.flush`
sends them alone when the bridge goes idle or stops.
"""

from __future__ import annotations

import secrets

from ..journal import JOURNAL_FIELD, accepted_key, claim_key

MINE, DONE, HELD = 1, 0, 2

# KEYS: the keys to confirm, then the keys to claim, then the accepted streams.
# ARGV: token, pending TTL, done TTL, how many of KEYS are confirmations, how
#       many are streams, the streams' MAXLEN, then one digest per
#       confirmation, then (digest, stream number, payload) per claim.
# Returns per claim: 1 ours, 0 done, 2 pending under another token, or the
# digest it holds when that differs from ours (the id was reused).
_CLAIM = """
local n_confirm = tonumber(ARGV[4])
local n_streams = tonumber(ARGV[5])
for i = 1, n_confirm do
  redis.call('SET', KEYS[i], 'd|' .. ARGV[6 + i], 'EX', ARGV[3])
end
local mine = 'p|' .. ARGV[1] .. '|'
local first_stream = #KEYS - n_streams
local out = {}
local a = 6 + n_confirm
for i = n_confirm + 1, first_stream do
  local digest, stream, payload = ARGV[a + 1], KEYS[first_stream + tonumber(ARGV[a + 2])], ARGV[a + 3]
  a = a + 3
  if redis.call('SET', KEYS[i], mine .. digest, 'NX', 'EX', ARGV[2]) then
    redis.call('XADD', stream, 'MAXLEN', '~', ARGV[6], '*', '""" + JOURNAL_FIELD.decode() + """', payload)
    out[#out + 1] = 1
  else
    local held = redis.call('GET', KEYS[i])
    local kind = string.sub(held, 1, 2)
    local theirs = nil
    if kind == 'd|' then
      theirs = string.sub(held, 3)
    elseif kind == 'p|' then
      theirs = string.sub(held, (string.find(held, '|', 3, true) or #held) + 1)
    end
    if theirs ~= nil and theirs ~= digest then
      out[#out + 1] = theirs
    elseif kind == 'd|' or held == 'done' then
      out[#out + 1] = 0
    elseif held == mine .. digest then
      out[#out + 1] = 1
    else
      out[#out + 1] = 2
    end
  end
end
return out
"""


class Claims:
    """One per bridge process, kept across reconnects: its token is how a batch
    that failed mid-enqueue recognises its own pending claims when retried."""

    def __init__(self, pending_ttl: int, done_ttl: int, accepted_maxlen: int = 100_000):
        self.token = secrets.token_hex(8)
        self.pending_ttl = pending_ttl
        self.done_ttl = done_ttl
        self.accepted_maxlen = accepted_maxlen
        self._script = None
        self._to_confirm: list[tuple[str, str]] = []
        self.last_confirmed: str | None = None  # one id known to be done (to notice a Redis that lost everything)

    def bind(self, client) -> None:
        """Use ``client`` (a fresh connection after a reconnect) from now on."""
        self._script = client.register_script(_CLAIM)

    def take(self, claims: list[tuple[str, str, str, bytes]]) -> list[int | bytes]:
        """Try to claim each ``(event id, digest, topic, payload)``; return one
        outcome each: MINE, DONE, HELD, or the other payload's digest (bytes).
        Sends the confirmations waiting from the previous batch too."""
        if not claims and not self._to_confirm:
            return []
        confirm = self._to_confirm
        streams: dict[str, int] = {}
        keys = [claim_key(i) for i, _ in confirm]
        keys += [claim_key(c[0]) for c in claims]
        tail: list = []
        for _, digest, topic, payload in claims:
            n = streams.get(topic)
            if n is None:
                n = streams[topic] = len(streams) + 1
            tail += (digest, n, payload)
        keys += [accepted_key(t) for t in streams]
        args: list = [self.token, self.pending_ttl, self.done_ttl, len(confirm), len(streams), self.accepted_maxlen]
        args += [d for _, d in confirm]
        args += tail
        result = self._script(keys=keys, args=args)
        if confirm:
            self.last_confirmed = confirm[-1][0]
        self._to_confirm = []
        return result

    def confirm(self, done: list[tuple[str, str]]) -> None:
        """Mark ``(event id, digest)`` pairs as enqueued (for ``done_ttl``,
        longer than the journal's reach) with the next :meth:`take` or :meth:`flush`."""
        self._to_confirm.extend(done)

    def flush(self) -> None:
        if self._to_confirm:
            self.take([])
