"""Voicemail: mailboxes, PINs, message storage, the leave/access dialogues and Voice2Mail."""

from __future__ import annotations

from collections.abc import Sequence

from ivr.config import Mailbox


def prompt_texts(mailboxes: Sequence[Mailbox]) -> list[str]:
    """Every TTS text the voicemail dialogues can say (bar counts and dates), to render ahead of calls."""
    from ivr.voicemail import access, leave

    return list(dict.fromkeys(leave.prompt_texts(mailboxes) + access.prompt_texts()))
