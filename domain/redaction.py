"""What a pack may not carry: secrets always, personal data when include_pii is false."""

from __future__ import annotations

import re

PII_PLACEHOLDER = "[redacted]"
SECRET_PLACEHOLDER = "[removed]"

# The patterns are plain strings so that the PostgreSQL export path can apply the very same
# rules inside its COPY query (storage/export.py); both dialects read them alike.
SECRET_KEY_PATTERN = (
    r"(secret|token|passw(or)?d|passwd|pwd|credential|api[_-]?key|private[_-]?key|authori[sz]ation|cookie|"
    r"webhook|signature|sas[_-]?url|connection[_-]?string)"
)
_PII_NAMES = (
    r"(principal[_-]?name|user[_-]?principal[_-]?name|userprincipalname|e?-?mail|email[_-]?address|mail|upn|"
    r"given[_-]?name|surname|full[_-]?name|first[_-]?name|last[_-]?name|phone|mobile(phone)?|"
    r"telephone[_-]?number)"
)
# Graph names people in many *DisplayName keys (userDisplayName, principalDisplayName, ...).
PII_KEY_PATTERN = rf"^{_PII_NAMES}$|display[_-]?name$"
EMAIL_PATTERN = r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"

# Literal pieces that every match of the patterns above contains (lower-cased). A database can
# test for these substrings far faster than it runs the patterns, and only rows that contain one
# need the patterns at all. tests/domain/test_redaction.py checks that they cover every match.
SECRET_KEY_HINTS = ("secret", "token", "passw", "pwd", "credential", "key", "authori", "cookie", "webhook",
                    "signature", "sas", "connection")
PII_KEY_HINTS = ("principal", "mail", "upn", "name", "phone", "mobile")

# ASCII case folding only, as PostgreSQL's lower() and ~* do for these patterns.
_SECRET_KEY = re.compile(SECRET_KEY_PATTERN, re.IGNORECASE | re.ASCII)
_PII_KEY = re.compile(PII_KEY_PATTERN, re.IGNORECASE | re.ASCII)
_EMAIL = re.compile(EMAIL_PATTERN, re.ASCII)


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


def is_pii_key(key: str) -> bool:
    return bool(_PII_KEY.search(key))


def redact_text(text: str | None) -> str | None:
    """Replace e-mail addresses inside free text."""
    if text is None:
        return None
    return _EMAIL.sub(PII_PLACEHOLDER, text)


def _mask(value: object) -> object:
    """Replace every value under a personal-data key, keeping the shape."""
    if isinstance(value, dict):
        return {k: _mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    return None if value is None else PII_PLACEHOLDER


def _key(key: str, taken: dict[str, object], *, include_pii: bool) -> str:
    if include_pii:
        return key
    # Keys can be personal data too ({"jane@contoso.com": false}); keep masked keys distinct.
    masked = redact_text(key) or key
    candidate, n = masked, 2
    while candidate in taken:
        candidate, n = f"{masked} #{n}", n + 1
    return candidate


def scrub(value: object, *, include_pii: bool) -> object:
    """Return a copy of a JSON value with secrets removed and, unless include_pii, personal data masked.

    Keys are kept so that the shape stays recognisable to an auditor; UUIDs and ids stay.
    A flag such as ``passwordless_enabled: true`` is not a secret: booleans and nulls are kept.
    """
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for key, item in value.items():
            key_text = str(key)
            name = _key(key_text, out, include_pii=include_pii)
            if is_secret_key(key_text) and not (item is None or isinstance(item, bool)):
                out[name] = SECRET_PLACEHOLDER
            elif not include_pii and is_pii_key(key_text):
                out[name] = _mask(item)
            else:
                out[name] = scrub(item, include_pii=include_pii)
        return out
    if isinstance(value, list):
        return [scrub(item, include_pii=include_pii) for item in value]
    if isinstance(value, str) and not include_pii:
        return redact_text(value)
    return value


def display_name(name: str | None, *, include_pii: bool) -> str | None:
    if name is None or include_pii:
        return name
    return PII_PLACEHOLDER
