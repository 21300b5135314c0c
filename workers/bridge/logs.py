"""Text from outside, made safe for one log line."""

from __future__ import annotations

# Control characters (C0, DEL, C1) and Unicode line separators: in a log line
# they would let a payload forge lines or drive the terminal (ESC).
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7f, 0xa0))}
_CONTROL.update({0x2028: "\\u2028", 0x2029: "\\u2029"})


def printable(text: str) -> str:
    """``text`` with control characters escaped, safe in one log line."""
    return text.translate(_CONTROL)


def one_line(exc: BaseException) -> str:
    """An exception as ``Type: first line of its message``."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"{type(exc).__name__}: {text}"
