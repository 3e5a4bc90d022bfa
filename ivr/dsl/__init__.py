"""ivr.dsl package."""
