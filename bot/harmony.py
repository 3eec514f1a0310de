"""Split a raw harmony completion into its messages and channels.

GPT-OSS answers in OpenAI's harmony format. The prompt ends with `<|start|>assistant`, so
a completion reads like::

    <|channel|>analysis<|message|>thinking...<|end|>
    <|start|>assistant<|channel|>final<|message|>answer<|return|>

A message opens with `<|start|>` (role) and/or `<|channel|>` (channel, then optional
header words such as `to=functions.x <|constrain|>json`), carries its text after
`<|message|>`, and closes with `<|end|>`, `<|return|>` or `<|call|>`. A completion cut
by the token limit leaves its last message open. Text is kept verbatim.

Example:
    >>> out = parse_harmony("<|channel|>final<|message|>Hi.<|return|>")
    >>> out.final
    'Hi.'
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(r"<\|(start|channel|message|end|return|call|constrain)\|>")
_CLOSERS = ("end", "return", "call")


@dataclass(frozen=True)
class HarmonyMessage:
    """One message: its channel (None when the model wrote none), header and text."""

    channel: str | None
    header: str
    content: str
    closed: bool


@dataclass(frozen=True)
class HarmonyOutput:
    """All messages of one completion, in order."""

    messages: tuple[HarmonyMessage, ...]

    def channel(self, name: str) -> str | None:
        """Text of every message on channel `name`, joined by newlines; None if none."""
        parts = [m.content for m in self.messages if m.channel == name]
        return "\n".join(parts) if parts else None

    @property
    def analysis(self) -> str | None:
        return self.channel("analysis")

    @property
    def final(self) -> str | None:
        return self.channel("final")


def parse_harmony(text: str) -> HarmonyOutput:
    """Parse a completion (special tokens kept) into messages; never raises.

    Text outside any message header (a model that writes no channels) becomes a message
    with channel None. A header cut off before `<|message|>` yields no message.
    """
    messages: list[HarmonyMessage] = []
    mode = "content"  # one of: role, header, content, idle
    header, content = "", ""

    def emit(closed: bool) -> None:
        words = header.split()
        if words or content:
            channel = words[0] if words else None
            messages.append(HarmonyMessage(channel, " ".join(words[1:]), content, closed))

    pos = 0
    for match in _TOKEN.finditer(text):
        piece, kind, pos = text[pos : match.start()], match.group(1), match.end()
        if mode == "header":
            header += piece
        elif mode in ("content", "idle"):
            content += piece
        if kind in ("start", "channel"):
            if mode in ("content", "idle"):
                emit(closed=False)
            header, content = "", ""
            mode = "role" if kind == "start" else "header"
        elif kind == "constrain" and mode == "header":
            header += " <|constrain|>"
        elif kind == "message" and mode in ("role", "header"):
            mode, content = "content", ""
        elif kind in _CLOSERS and mode in ("content", "idle"):
            emit(closed=mode == "content")
            header, content, mode = "", "", "idle"
    if mode in ("content", "idle"):
        content += text[pos:]
        emit(closed=False)
    return HarmonyOutput(tuple(messages))
