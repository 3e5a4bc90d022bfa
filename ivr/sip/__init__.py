"""SIP signalling: sans-IO message parsing (message, sdp), transactions, dialogs and the user
agent (transaction, dialog, ua, timers), digest auth, the registrar and trunks (auth, throttle,
registrar, trunk); transport is the only module here that touches asyncio."""
