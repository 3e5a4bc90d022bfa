"""Transfers, ring groups, trunks, REFER, pickup and the call journal (a package, so its helper
modules import relatively and type-check under one name)."""
