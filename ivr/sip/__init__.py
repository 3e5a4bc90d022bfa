"""ivr.sip package."""
