"""ivr.media package."""
