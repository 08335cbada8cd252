"""What a pack may not carry: secrets always, personal data when include_pii is false."""

from __future__ import annotations

import re

PII_PLACEHOLDER = "[redacted]"
SECRET_PLACEHOLDER = "[removed]"

_SECRET_KEY = re.compile(
    r"(secret|token|passw(or)?d|passwd|pwd|credential|api[_-]?key|private[_-]?key|authori[sz]ation|cookie|"
    r"webhook|signature|sas[_-]?url|connection[_-]?string)",
    re.IGNORECASE,
)
_PII_KEY = re.compile(
    r"^(principal[_-]?name|user[_-]?principal[_-]?name|userprincipalname|e?-?mail|email[_-]?address|mail|upn|"
    r"given[_-]?name|surname|full[_-]?name|first[_-]?name|last[_-]?name|phone|mobile(phone)?|"
    r"telephone[_-]?number)$"
    # Graph names people in many *DisplayName keys (userDisplayName, principalDisplayName, ...).
    r"|display[_-]?name$",
    re.IGNORECASE,
)
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-']+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")


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


def _key(key: str, taken: dict, *, include_pii: bool) -> str:
    if include_pii:
        return key
    # Keys can be personal data too ({"jane@contoso.com": false}); keep masked keys distinct.
    masked = redact_text(key)
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
        out: dict = {}
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
