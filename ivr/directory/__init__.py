"""ivr.directory package."""
