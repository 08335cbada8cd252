"""What a pack may not carry: secrets always, personal data when include_pii is false."""

from __future__ import annotations

import re

PII_PLACEHOLDER = "[redacted]"
SECRET_PLACEHOLDER = "[removed]"

_SECRET_KEY = re.compile(
    r"(secret|token|passw(or)?d|passwd|credential|api[_-]?key|private[_-]?key|authori[sz]ation|cookie|"
    r"webhook|signature|sas[_-]?url|connection[_-]?string)",
    re.IGNORECASE,
)
_PII_KEY = re.compile(
    r"^(display[_-]?name|displayname|subject_display_name|principal[_-]?name|user[_-]?principal[_-]?name|"
    r"userprincipalname|e?-?mail|email[_-]?address|mail|upn|given[_-]?name|surname|full[_-]?name|"
    r"first[_-]?name|last[_-]?name|phone|mobile(phone)?|telephone[_-]?number)$",
    re.IGNORECASE,
)
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-']+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


def is_pii_key(key: str) -> bool:
    return bool(_PII_KEY.match(key))


def redact_text(text: str | None) -> str | None:
    """Replace e-mail addresses inside free text."""
    if text is None:
        return None
    return _EMAIL.sub(PII_PLACEHOLDER, text)


def scrub(value: object, *, include_pii: bool) -> object:
    """Return a copy of a JSON value with secrets removed and, unless include_pii, personal data masked.

    Keys are kept so that the shape stays recognisable to an auditor; UUIDs and ids stay.
    """
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            key_text = str(key)
            if is_secret_key(key_text):
                out[key_text] = SECRET_PLACEHOLDER
            elif not include_pii and is_pii_key(key_text) and item is not None and not isinstance(item, (dict, list)):
                out[key_text] = PII_PLACEHOLDER
            else:
                out[key_text] = scrub(item, include_pii=include_pii)
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
