"""The console's UI strings in English and German (the caller-side sentences live elsewhere).

:func:`language` picks the page's language: the ``lang`` cookie (set by the language links),
else the browser's ``Accept-Language`` when it prefers one of ours, else ``[http] language``.
A test checks that both languages have every key.
"""

from __future__ import annotations

LANGUAGES = ("en", "de")

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "app": "ivr console", "login": "Log in", "logout": "Log out", "username": "User name",
        "password": "Password", "login_failed": "Wrong user name or password.",
        "login_throttled": "Too many wrong logins from this address. Try again later.",
        "dashboard": "Dashboard", "journal": "Journal", "voicemail": "Voicemail", "flows": "Flows",
        "switches": "Switches", "me": "My phone", "calls_up": "Calls up now", "no_calls": "No calls up.",
        "caller": "Caller", "called": "Called", "step": "Step", "answered": "Answered", "per_step": "Calls per step",
        "transfer": "Transfer", "transfer_to": "Extension",
        "registrations": "Registrations", "extension": "Extension", "name": "Name", "contacts": "Phones",
        "reload": "Last reload", "never": "none since the start", "capacity": "Capacity",
        "started": "Started", "duration": "Duration", "outcome": "Outcome", "path": "Path", "filter": "Filter",
        "since": "Since (2h, 7d, 2026-11-22)", "csv": "Download CSV", "no_messages": "No messages.",
        "from": "From", "received": "Received", "status": "Status", "mark_saved": "Mark as heard",
        "delete": "Delete", "mailbox": "Mailbox", "check": "Check", "deploy": "Deploy",
        "flow_ok": "No problems found.", "deployed": "Deployed and reloaded.", "not_deployed":
        "Not deployed: the flow has errors. The running flow is unchanged.", "edit": "Edit",
        "picture": "Picture of the running flows", "on": "on", "off": "off", "turn_on": "Turn on",
        "turn_off": "Turn off", "follow_me": "Follow-me numbers",
        "follow_me_help": "Rung one after the other when you do not answer your phone (one per line). "
                          "Empty: nobody. Reset: the numbers the administrator set.",
        "save": "Save", "reset": "Reset", "saved": "Saved.", "forbidden": "You may not see this page.",
        "hang_up": "Hang up", "language": "Deutsch", "other_lang": "de", "code": "en",
        "greetings": "Greetings", "greetings_help": "What callers hear before they leave you a message. Upload a "
        "WAV file; it replaces the greeting recorded by phone.", "kind": "Kind", "recording": "Recording",
        "none": "none", "upload": "Upload", "greeting_unavailable": "Not available", "greeting_busy": "Busy",
        "greeting_temporary": "Temporary (replaces both while set)", "greeting_name": "Your name",
        "prompts": "Prompts", "prompts_help": "Recordings in the prompt folder as LANGUAGE/ID.wav: an id of one "
        "of ivr's own sentences replaces its text-to-speech; a flow plays any other with play \"LANGUAGE/ID.wav\".",
        "language_name": "Language", "prompt_id": "Id", "sentence": "Sentence",
        "directory": "Directory", "directory_help": "The people callers reach by name. A change is checked as "
        "ivr check does, written, and the server reloads.", "first_name": "First name", "last_name": "Last name",
        "display_name": "Display name", "department": "Department",
        "add_person": "Add a person", "pikett": "On-call (Pikett) number",
        "pikett_help": "While you are on call, the flows' transfer to pikett GROUP rings this number for the "
        "groups you are in. Empty: you are not on call. Reset: the number the administrator set.",
    },
    "de": {
        "app": "ivr-Konsole", "login": "Anmelden", "logout": "Abmelden", "username": "Benutzername",
        "password": "Passwort", "login_failed": "Benutzername oder Passwort falsch.",
        "login_throttled": "Zu viele falsche Anmeldungen von dieser Adresse. Bitte später nochmals versuchen.",
        "dashboard": "Übersicht", "journal": "Anrufliste", "voicemail": "Combox", "flows": "Abläufe",
        "switches": "Schalter", "me": "Mein Telefon", "calls_up": "Laufende Anrufe",
        "no_calls": "Keine laufenden Anrufe.", "caller": "Anrufer", "called": "Angerufen", "step": "Schritt",
        "answered": "Angenommen", "per_step": "Anrufe pro Schritt",
        "transfer": "Weiterleiten", "transfer_to": "Nebenstelle", "registrations": "Anmeldungen",
        "extension": "Nebenstelle", "name": "Name", "contacts": "Telefone", "reload": "Letztes Neuladen",
        "never": "keines seit dem Start", "capacity": "Kapazität", "started": "Beginn", "duration": "Dauer",
        "outcome": "Ergebnis", "path": "Verlauf", "filter": "Filtern", "since": "Seit (2h, 7d, 2026-11-22)",
        "csv": "Als CSV herunterladen", "no_messages": "Keine Nachrichten.", "from": "Von",
        "received": "Empfangen", "status": "Status", "mark_saved": "Als gehört markieren", "delete": "Löschen",
        "mailbox": "Combox", "check": "Prüfen", "deploy": "Aktivieren", "flow_ok": "Keine Probleme gefunden.",
        "deployed": "Aktiviert und neu geladen.",
        "not_deployed": "Nicht aktiviert: der Ablauf hat Fehler. Der laufende Ablauf ist unverändert.",
        "edit": "Bearbeiten", "picture": "Bild der laufenden Abläufe", "on": "ein", "off": "aus",
        "turn_on": "Einschalten", "turn_off": "Ausschalten", "follow_me": "Follow-me-Nummern",
        "follow_me_help": "Werden nacheinander angerufen, wenn Sie Ihr Telefon nicht abnehmen (eine pro Zeile). "
                          "Leer: niemand. Zurücksetzen: die Nummern des Administrators.",
        "save": "Speichern", "reset": "Zurücksetzen", "saved": "Gespeichert.",
        "forbidden": "Diese Seite ist für Sie nicht sichtbar.", "hang_up": "Auflegen", "language": "English",
        "other_lang": "en", "code": "de",
        "greetings": "Ansagen", "greetings_help": "Was Anrufer hören, bevor sie Ihnen eine Nachricht hinterlassen. "
        "Laden Sie eine WAV-Datei hoch; sie ersetzt die am Telefon aufgenommene Ansage.", "kind": "Art",
        "recording": "Aufnahme", "none": "keine", "upload": "Hochladen", "greeting_unavailable": "Nicht erreichbar",
        "greeting_busy": "Besetzt", "greeting_temporary": "Vorübergehend (ersetzt beide, solange gesetzt)",
        "greeting_name": "Ihr Name", "prompts": "Ansagetexte",
        "prompts_help": "Aufnahmen im Ansageordner als SPRACHE/ID.wav: die Id eines Satzes von ivr ersetzt dessen "
        "Sprachsynthese; jede andere spielt ein Ablauf mit play \"SPRACHE/ID.wav\".",
        "language_name": "Sprache", "prompt_id": "Id", "sentence": "Satz",
        "directory": "Telefonbuch", "directory_help": "Die Personen, die Anrufer über ihren Namen erreichen. Eine "
        "Änderung wird wie von ivr check geprüft, gespeichert, und der Server lädt neu.", "first_name": "Vorname",
        "last_name": "Nachname", "display_name": "Angezeigter Name",
        "department": "Abteilung", "add_person": "Person hinzufügen", "pikett": "Pikett-Nummer",
        "pikett_help": "Solange Sie Pikett haben, ruft ein Ablauf mit transfer to pikett GRUPPE diese Nummer für "
        "Ihre Gruppen an. Leer: Sie haben kein Pikett. Zurücksetzen: die Nummer des Administrators.",
    },
}


def language(cookie: str | None, accept: str, default: str) -> str:
    if cookie in LANGUAGES:
        return cookie
    for part in accept.split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGUAGES:
            return code
    return default


def texts(lang: str) -> dict[str, str]:
    return TEXTS.get(lang, TEXTS["en"])
