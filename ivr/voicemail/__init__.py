"""Voicemail: mailboxes, PINs, message storage, the leave/access dialogues and Voice2Mail."""

from __future__ import annotations

from collections.abc import Sequence

from ivr.config import Mailbox


def prompt_texts(mailboxes: Sequence[Mailbox], language: str = "en") -> list[str]:
    """Every TTS text the voicemail dialogues can say in ``language`` (bar counts and dates), to render
    ahead of calls."""
    from ivr.language import catalogue
    from ivr.voicemail import access, leave

    lang = catalogue(language)
    return list(dict.fromkeys(leave.prompt_texts(mailboxes, lang) + access.prompt_texts(lang)))
