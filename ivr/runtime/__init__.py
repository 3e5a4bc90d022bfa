"""ivr.runtime package."""
