"""SIP signalling: sans-IO message parsing (message, sdp), transactions, dialogs and the user
agent (transaction, dialog, timers; ua with its client side in client, shared state in uacore,
its events in events), SIP INFO key bodies (info), digest auth, the registrar and trunks (auth,
throttle, registrar, trunk); transport is the only module here that touches asyncio.  Nothing
here imports the rest of ivr: the runtime fills the registrar's and trunks' records."""
