"""ivr: a voice IVR and auto-attendant engine.

Layout: ``ivr.dsl`` (flow language: grammar, AST, checks, compiler, machine),
``ivr.sip`` (SIP/RTP signalling, sans-IO core plus asyncio transports),
``ivr.media`` (codecs, RTP, DTMF, media clock, prompts, TTS, recording, ASR),
``ivr.runtime`` (the per-call runner joining dialog, media and flow machine),
``ivr.voicemail``, ``ivr.directory``, ``ivr.web`` (the browser console, the JSON API,
/metrics), and ``ivr.commands`` (the ``ivr`` CLI).
"""

__version__ = "0.1.0"
