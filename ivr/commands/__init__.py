"""Subcommands of the ``ivr`` command line.

Each module in this package that defines ``register(subparsers)`` adds one
or more subcommands; ``register`` must call ``parser.set_defaults(func=...)``
where ``func(args) -> int`` returns the process exit status.  Modules are
discovered, so adding a command never touches ``ivr/cli.py``.
"""
