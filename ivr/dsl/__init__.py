"""The flow language: text -> parse (parser, grammar.lark) -> AST (ast) -> checks -> compiled
tables (compiler) -> one sans-IO Machine per call (machine), speaking the events and actions of
events.  loader.load_flow runs the whole pipeline on a flow's own files (ivr.runtime.deployment
adds the checks that need the deployment file and prompt folders); simulate and flowtest drive a Machine on a
fake clock for ``ivr simulate`` and ``ivr test``; graph draws the compiled tables."""
