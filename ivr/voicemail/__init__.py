"""ivr.voicemail package."""
