"""What a pack may not carry: secrets always, personal data when include_pii is false.

This module is the one redaction policy. The portable export path calls it per
value; the PostgreSQL COPY path runs the same rules inside the database
(storage/export.py, function ``reviewpacks_redact_json`` of migration 0006),
with every pattern and list passed from here as a query parameter, so the two
cannot drift apart in what they match. Every pattern is written in the common
subset of Python's ``re`` and PostgreSQL's regular expressions (no ``\\s``,
``\\w`` or scoped flags; case is spelled out as ``[Aa]``) and is checked for
equal results by tests/workers/test_export_parity.py.

The policy, in order of precedence for one key and its value:

1. A key that names a secret (password, token, accountKey, connectionString, ...)
   loses its value, whatever the value is; flags and nulls stay. A few short
   keys (``key``, ``sig``, ``auth``) are only secret when their value looks
   like a credential, so that ``{"key": "identity"}`` stays readable.
2. Without personal data, a key that names a person or an account
   (displayName, userPrincipalName, mail, phone, owner, manager, members, ...)
   has every string and number beneath it replaced; UUIDs stay.
3. Without personal data, structured documents are filtered by an allow-list:
   a string is kept only under a key known to carry no personal data (type,
   status, severity, role, ...) or when its shape carries none (a UUID, a
   short number, a date, a known enumeration value). Every other string is
   replaced, so a name planted under a key nobody thought of does not leave.
4. Every kept string, and every key, is cut to the spreadsheet cell limit and
   then scanned by value shape: secrets always (JWTs, ``Bearer`` tokens, SAS
   queries, connection-string keys, PEM blocks, AWS key ids, provider tokens,
   credentials in URLs), and without personal data also e-mail addresses and
   UPNs, IPv4 and IPv6 addresses and phone numbers.

Names inside free prose (a review's headline, a finding's title) cannot be
found reliably; :data:`LIMITATION` says so wherever a pack describes itself.

Every replacement is a fixed placeholder per category, so the number of
replacements can be read off any pack's bytes, whichever path wrote them.

Linear time: every pattern that scans free text starts only at the boundary of
a run of the characters it consumes (a negative lookbehind), so no run is
rescanned from each of its positions; Python's backtracking engine and
PostgreSQL's engine then both finish in time proportional to the text.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping

from domain.csvsafe import cut

POLICY_VERSION = 2

PLACEHOLDERS = {
    "secret": "[removed:secret]",
    "person": "[redacted:person]",
    "text": "[redacted:text]",
    "email": "[redacted:email]",
    "ip": "[redacted:ip]",
    "phone": "[redacted:phone]",
}
SECRET_PLACEHOLDER = PLACEHOLDERS["secret"]
PII_PLACEHOLDER = PLACEHOLDERS["person"]
TEXT_PLACEHOLDER = PLACEHOLDERS["text"]

LIMITATION = (
    "Names and other personal details written inside free text (titles, headlines, review prose) "
    "cannot be found reliably and may remain."
)

# Nesting deeper than this is not security data; it fails the pack as invalid source data
# instead of exhausting a stack (Python's recursion limit, PostgreSQL's max_stack_depth).
MAX_DEPTH = 64


class InvalidSourceData(ValueError):
    """A source row cannot be exported as it is (for example a corrupt stored report)."""


def _ci(word: str) -> str:
    """A case-insensitive spelling of an ASCII word that both regex dialects read alike."""
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in word)


# Whitespace and the separators that end an address or a token, listed one by one: \s means
# different things to Python (Unicode) and PostgreSQL (locale), so it is never used.
_SPACE = " \t\n\r\f\v\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
_ADDRESS_STOP = _SPACE + "@<>()\\[\\]{},;:\"/\\\\|=&?*!`^"

# -- keys ------------------------------------------------------------------------------------

# Keys are compared in one normal form: camelCase split at lower-to-upper changes, every run
# of other characters made one underscore, lower-cased (userPrincipalName -> user_principal_name),
# and then by whole parts, with set membership rather than patterns: PostgreSQL's regex engine is
# slow on long alternations, and a key is classified for every value of every document.
KEY_CAMEL_PATTERN = "([a-z0-9])([A-Z])"
KEY_SEPARATOR_PATTERN = "[^A-Za-z0-9]+"

# A key is secret-like when any of its parts is one of these, when its last part is "key" or
# "keys" after some other part (accountKey, x-functions-key), or when it holds a connection string.
SECRET_KEY_PARTS = tuple(
    "secret secrets token tokens password passwords passwd passphrase pwd credential credentials cookie cookies "
    "webhook webhooks signature sas pin otp apikey privatekey accountkey sharedkey primarykey secondarykey "
    "accesskey secretkey masterkey connectionstring connstr authorization authorisation".split()
)
SECRET_KEY_LAST_PARTS = ("key", "keys")
SECRET_KEY_PIECES = ("connection_string", "conn_str")
# Short names that are secrets only when the value looks like one: a long token without spaces
# that holds a digit.
WEAK_SECRET_KEYS = ("key", "keys", "sig", "auth")
CREDENTIAL_VALUE_PATTERN = "^[A-Za-z0-9+/=_.~%-]{16,}$"

# A key names a person or an account when its last one, two or three parts are one of these
# (userDisplayName, onPremisesSamAccountName, manager), or its last part is "by" (createdBy).
PERSON_KEYS = tuple(
    "display_name displayname given_name givenname surname sur_name full_name fullname first_name firstname "
    "last_name lastname middle_name nickname nick_name user_principal_name userprincipalname principal_name upn "
    "mail mails email emails e_mail email_address email_addresses mail_nickname mailnickname other_mails "
    "proxy_addresses sam_account_name samaccountname s_amaccount_name account_name user_name username login "
    "login_name logon_name phone phones phone_number mobile mobile_phone business_phones home_phone telephone "
    "telephone_number fax fax_number street_address postal_code address addresses employee_id employee_number "
    "distinguished_name ip ips ip_address ip_addresses ipaddress birthday date_of_birth owner owners manager "
    "managers member members principal principals user users contact contacts assignee assignees requester "
    "requestor approver approvers reviewer reviewers sponsor sponsors actor author creator initiator sender "
    "recipient recipients person people guest guests employee customer signer".split()
)
PERSON_KEY_LAST_PARTS = ("by",)

# Keys whose string values are technical (an enumeration, a role or permission name), whole or
# as the last part (userType, riskState).
SAFE_KEYS = tuple(
    "type types kind status state severity level category categories result outcome reason reason_code action "
    "actions operation method methods protocol platform version scope scopes permission permissions role roles "
    "role_name resource_type odata_type risk_level risk_state risk_detail mode enforcement license licenses sku "
    "sku_part_number feature features control controls setting settings policy_name app_role grant_type "
    "consent_type audience authentication_method authentication_methods".split()
)
SAFE_KEY_LAST_PARTS = ("type", "status", "state", "severity", "level", "category", "role", "permission")
# Keys of a published review's own prose, which is the review's content and stays (scanned).
PROSE_KEYS = tuple(
    "headline overall_status title detail details body key justification expires source as_of "
    "interpretation_version severity description recommendation remediation".split()
)

# Values whose shape carries no personal data: empty, a UUID, a short number, an ISO date or
# time; or (SAFE_VALUES, compared lower-cased and only for ASCII text) a known enumeration value.
SAFE_VALUE_PATTERN = (
    "^$"
    "|^[{]?[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}[}]?$"
    "|^-?[0-9]{1,6}([.][0-9]{1,6})?%?$"
    "|^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]{1,9})?)?(Z|[+-][0-9]{2}:?[0-9]{2})?)?$"
)
SAFE_VALUES = tuple(
    "enabled disabled enforced enforce on off true false yes no none null unknown n/a na all any high medium low "
    "critical informational info warning error success succeeded failed failure pending active inactive allowed "
    "allow blocked block denied deny required optional compliant noncompliant configured notconfigured "
    "not_configured reportonly report_only enabledforreportingbutnotenforced user group serviceprincipal "
    "service_principal device application guest member owner admin global read write readwrite delegated mfa sms "
    "voice fido2 authenticator password passwordless windowshelloforbusiness softwareoath hardwareoath "
    "temporaryaccesspass new acknowledged resolved open closed granted revoked expired default".split()
)
UUID_PATTERN = "^[{]?[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}[}]?$"

# -- values: (pattern, replacement), applied in order --------------------------------------

SECRET_RULES: tuple[tuple[str, str], ...] = (
    # PEM blocks, with or without their END line (a cut text may have lost it).
    ("-----BEGIN[A-Z0-9 ]{0,40}-----[^-]*(-----END[A-Z0-9 ]{0,40}-----)?", SECRET_PLACEHOLDER),
    # JSON Web Tokens: two base64url parts that start with {" encoded, and a signature.
    ("(?<![A-Za-z0-9_.-])eyJ[A-Za-z0-9_-]{17,}[.]eyJ[A-Za-z0-9_-]*[.][A-Za-z0-9_-]*", SECRET_PLACEHOLDER),
    # The token after Bearer, whatever its format.
    ("(?<![A-Za-z0-9])(Bearer|bearer|BEARER)[ \t]+[A-Za-z0-9._~+/=-]+", "\\1 " + SECRET_PLACEHOLDER),
    # A SAS query: everything after the ? of a URL that carries sig= (a signed URL is the key).
    (f"(?<=[?])[^?#{_SPACE}\"'<>]*sig=[^?#{_SPACE}\"'<>]*", SECRET_PLACEHOLDER),
    # sig=, AccountKey=, SharedAccessKey=, Password= ... in connection strings and loose queries.
    (
        "(?<![A-Za-z0-9])("
        + "|".join(
            _ci(word)
            for word in ("sig", "accountkey", "sharedaccesskey", "sharedaccesssignature", "accesskey", "secretkey",
                         "clientsecret", "client_secret", "password", "pwd", "apikey", "api_key", "token",
                         "access_token", "code")
        )
        + f")=[^;&{_SPACE}\"'<>]+",
        "\\1=" + SECRET_PLACEHOLDER,
    ),
    # user:password@ in URLs.
    (f"://[^/@:{_SPACE}\"'<>]+:[^/@{_SPACE}\"'<>]+@", "://" + SECRET_PLACEHOLDER + "@"),
    # AWS access key ids.
    ("(?<![A-Za-z0-9])(AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])", SECRET_PLACEHOLDER),
    # Provider tokens with a fixed prefix: GitHub, GitLab, Slack, Stripe, Google, npm, SendGrid,
    # Hugging Face, Shopify.
    (
        "(?<![A-Za-z0-9_.-])(ghp_|gho_|ghu_|ghs_|ghr_|github_pat_|glpat-|xox[abposr]-|sk_live_|rk_live_|sk_test_|"
        "AIza|npm_|SG[.]|hf_|shpat_)[A-Za-z0-9_-]{20,}[A-Za-z0-9_.-]*",
        SECRET_PLACEHOLDER,
    ),
    # Microsoft Entra client secrets (three characters, a digit, Q~, then 31 to 34 more).
    ("(?<![A-Za-z0-9_.~-])[A-Za-z0-9_.~-]{3}[0-9]Q~[A-Za-z0-9_.~-]{31,34}(?![A-Za-z0-9_.~-])", SECRET_PLACEHOLDER),
    # Azure storage account keys: 64 bytes in base64.
    ("(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{86}==(?![A-Za-z0-9+/=])", SECRET_PLACEHOLDER),
    # Incoming-webhook URLs, which are their own credential.
    ("hooks[.]slack[.]com/services/[A-Za-z0-9_-]+/[A-Za-z0-9_-]+/[A-Za-z0-9_-]{20,}", SECRET_PLACEHOLDER),
    ("webhook[.]office[.]com/[A-Za-z0-9/_-]*@[A-Za-z0-9@/_-]+", SECRET_PLACEHOLDER),
    ("discord(app)?[.]com/api/webhooks/[0-9]+/[A-Za-z0-9_-]{20,}", SECRET_PLACEHOLDER),
)

# An address: a run of address characters (any letter, including non-ASCII, and the # of guest
# UPNs such as alias_domain.com#EXT#@tenant.onmicrosoft.com), an @, and a domain. The local part
# starts only where such a run starts, which keeps the scan linear.
EMAIL_PATTERN = f"(?<![^{_ADDRESS_STOP}])[^{_ADDRESS_STOP}]+@[^{_ADDRESS_STOP}.][^{_ADDRESS_STOP}]*"
IPV4_PATTERN = "(?<![0-9.])[0-9]{1,3}([.][0-9]{1,3}){3}(?![0-9]|[.][0-9])"
_H = "[0-9A-Fa-f]{1,4}"
IPV6_PATTERN = (
    f"(?<![0-9A-Za-z:.])({_H}:){{7}}{_H}(?![0-9A-Za-z:])"
    f"|(?<![0-9A-Za-z:.])({_H}(:{_H}){{0,6}})?::({_H}(:{_H}){{0,6}})?(?![0-9A-Za-z:])"
)
PHONE_PATTERNS = (
    # International: a + and at least eight digits with the usual separators.
    "(?<![0-9A-Za-z+])[+][0-9][0-9 ().-]{6,20}[0-9](?![0-9])",
    # North American and similar: (555) 123-4567, 555-123-4567, 555.123.4567.
    "(?<![0-9A-Za-z.-])[(]?[0-9]{3}[)]?[ .-]?[0-9]{3}[ .-][0-9]{4}(?![0-9A-Za-z])",
)
PII_RULES: tuple[tuple[str, str], ...] = (
    (EMAIL_PATTERN, PLACEHOLDERS["email"]),
    (IPV4_PATTERN, PLACEHOLDERS["ip"]),
    (IPV6_PATTERN, PLACEHOLDERS["ip"]),
    *((pattern, PLACEHOLDERS["phone"]) for pattern in PHONE_PATTERNS),
)
# For each rule above, a cheap pattern that every match satisfies: most short texts need none of
# the rules (tests/domain/test_redaction.py checks that each hint is implied by its rule).
PII_HINTS = ("@", "[0-9][.][0-9]", ":", "[+][0-9]", "[0-9][0-9][0-9]")

# A cheap first look before the patterns run, used by both paths alike (the COPY query cannot
# afford the patterns on every row). Every secret-like key holds one of SECRET_KEY_HINTS once
# lower-cased; every match of SECRET_RULES holds an =, ~ or @ (SECRET_CHARS_PATTERN, one
# character class, which PostgreSQL tests fast) or one of SECRET_VALUE_HINTS (LIKE pieces).
# tests/domain/test_redaction.py checks both.
SECRET_KEY_HINTS = (
    "secret", "token", "pass", "pwd", "credential", "cookie", "webhook", "signatur", "sas", "conn", "key", "auth",
    "pin", "otp", 'sig"',
)
SECRET_CHARS_PATTERN = "[=~@]"
SECRET_VALUE_HINTS = (
    "-----", "earer", "EARER", "eyJ", "AKIA", "ASIA", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-",
    "xox", "sk_live_", "rk_live_", "sk_test_", "AIza", "npm_", "SG.", "hf_", "shpat_", "hooks.slack.com", "discord",
)

_RE_KEY_CAMEL = re.compile(KEY_CAMEL_PATTERN)
_RE_KEY_SEPARATOR = re.compile(KEY_SEPARATOR_PATTERN)
_RE_SECRET_CHARS = re.compile(SECRET_CHARS_PATTERN)
_RE_CREDENTIAL = re.compile(CREDENTIAL_VALUE_PATTERN)
_RE_SAFE_VALUE = re.compile(SAFE_VALUE_PATTERN)
_RE_UUID = re.compile(UUID_PATTERN)
_SECRET_KEY_PARTS = frozenset(SECRET_KEY_PARTS)
_PERSON_KEYS = frozenset(PERSON_KEYS)
_SAFE_KEYS = frozenset(SAFE_KEYS)
_SAFE_KEY_LAST_PARTS = frozenset(SAFE_KEY_LAST_PARTS)
_PROSE_KEYS = frozenset(PROSE_KEYS)
_SAFE_VALUES = frozenset(SAFE_VALUES)
_SECRET_RULES = tuple((re.compile(p), r) for p, r in SECRET_RULES)
_PII_RULES = tuple((re.compile(p), r, re.compile(h)) for (p, r), h in zip(PII_RULES, PII_HINTS, strict=True))


# Short texts repeat across rows (keys, enumerations, role names): their results are remembered,
# a bounded number of them, so a million rows with the same keys classify each key once.
_SHORT = 64
_REMEMBERED = 8192


def normal_key(key: str) -> str:
    return _normal_key_cached(key) if len(key) <= _SHORT else _normal_key(key)


def _normal_key(key: str) -> str:
    return _RE_KEY_SEPARATOR.sub("_", _RE_KEY_CAMEL.sub(r"\1_\2", key)).strip("_").lower()


_normal_key_cached = functools.lru_cache(maxsize=_REMEMBERED)(_normal_key)


def _secret_key(key: str) -> bool:
    parts = key.split("_")
    return (
        not _SECRET_KEY_PARTS.isdisjoint(parts)
        or (len(parts) > 1 and parts[-1] in SECRET_KEY_LAST_PARTS)
        or any(piece in key for piece in SECRET_KEY_PIECES)
    )


def _person_key(key: str) -> bool:
    parts = key.split("_")
    return (
        any("_".join(parts[-n:]) in _PERSON_KEYS for n in (1, 2, 3))
        or (len(parts) > 1 and parts[-1] in PERSON_KEY_LAST_PARTS)
    )


def _safe_key(key: str, prose: bool) -> bool:
    if key in _SAFE_KEYS or (prose and key in _PROSE_KEYS):
        return True
    head, _, last = key.rpartition("_")
    return bool(head) and last in _SAFE_KEY_LAST_PARTS


def _safe_value(text: str) -> bool:
    return bool(_RE_SAFE_VALUE.fullmatch(text)) or (text.isascii() and text.lower() in _SAFE_VALUES)


def is_secret_key(key: str) -> bool:
    """A key whose value is removed from every pack (flags and nulls excepted)."""
    return _secret_key(normal_key(key))


def is_pii_key(key: str) -> bool:
    """A key whose value names a person or an account."""
    return _person_key(normal_key(key))


def _is_credential(value: str) -> bool:
    return bool(_RE_CREDENTIAL.fullmatch(value)) and any(c.isdigit() and c.isascii() for c in value)


def redact_text(text: str | None, *, include_pii: bool = False) -> str | None:
    """Replace secrets, and unless include_pii personal data, found by shape inside text.

    The text is scanned as it is; callers cut it to the cell limit first (domain.csvsafe.cut).
    """
    if text is None:
        return None
    if len(text) <= _SHORT:
        return _redact_short(text, include_pii)
    return _redact_text(text, include_pii)


def _redact_text(text: str, include_pii: bool) -> str:
    # The first looks only skip work: a text without a hint has nothing the patterns could match.
    if may_hold_secret_value(text):
        for pattern, replacement in _SECRET_RULES:
            text = pattern.sub(replacement, text)
    if not include_pii:
        for pattern, replacement, hint in _PII_RULES:
            if hint.search(text):
                text = pattern.sub(replacement, text)
    return text


_redact_short = functools.lru_cache(maxsize=_REMEMBERED)(_redact_text)


def may_hold_secret_value(text: str) -> bool:
    """False only when no secret pattern can match: the COPY path's first look, mirrored."""
    return bool(_RE_SECRET_CHARS.search(text)) or any(hint in text for hint in SECRET_VALUE_HINTS)


def may_hold_secret(json_text: str) -> bool:
    """False only when a JSON text can hold no secret key and no secret value."""
    lowered = json_text.lower()
    return any(hint in lowered for hint in SECRET_KEY_HINTS) or may_hold_secret_value(json_text)


def scrub(value: object, *, include_pii: bool, prose: bool = False) -> object:
    """Return a copy of a JSON value with secrets removed and, unless include_pii, personal data masked.

    ``prose`` keeps (and scans) the prose fields of a published review, which are its content.
    Keys are kept, scanned, so the shape stays recognisable; where two keys become the same,
    the later ones are numbered (" #2", " #3") in the order they come.
    """
    return _scrub(value, include_pii, prose, "", False, 0)


def _scrub(value: object, pii: bool, prose: bool, key: str, masked: bool, depth: int) -> object:
    if depth > MAX_DEPTH:
        raise InvalidSourceData(f"a JSON value is nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        return _scrub_object(value, pii, prose, masked, depth)
    if isinstance(value, list):
        return [_scrub(item, pii, prose, key, masked, depth + 1) for item in value]
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _scrub_text(value, pii, prose, key, masked)
    # Numbers carry counts and scores; under a person's key they may be a phone or an id.
    return PII_PLACEHOLDER if masked and not pii else value


def _scrub_object(value: dict[object, object], pii: bool, prose: bool, masked: bool, depth: int) -> dict[str, object]:
    out: dict[str, object] = {}
    seen: dict[str, int] = {}
    for raw_key, item in value.items():
        text = str(raw_key)
        name, key, secret, person = _key_facts_cached(text, pii) if len(text) <= _SHORT else _key_facts(text, pii)
        n = seen[name] = seen.get(name, 0) + 1
        if item is not None and not isinstance(item, bool) and (
            secret or (key in WEAK_SECRET_KEYS and isinstance(item, str) and _is_credential(item))
        ):
            result: object = SECRET_PLACEHOLDER
        elif isinstance(item, str) and depth < MAX_DEPTH:
            # A string, the most common value, without a call of _scrub of its own.
            result = _scrub_text(item, pii, prose, key, masked or (person and not pii))
        else:
            result = _scrub(item, pii, prose, key, masked or (person and not pii), depth + 1)
        out[name if n == 1 else f"{name} #{n}"] = result
    return out


def _scrub_text(value: str, pii: bool, prose: bool, key: str, masked: bool) -> str | None:
    text = cut(value)
    if pii:
        return redact_text(text, include_pii=True)
    if masked:
        return text if _RE_UUID.fullmatch(text) or not text else PII_PLACEHOLDER
    if _safe_value(text) or _safe_key(key, prose):
        return redact_text(text, include_pii=False)
    return TEXT_PLACEHOLDER


def _key_facts(text: str, pii: bool) -> tuple[str, str, bool, bool]:
    """A key as the output names it, its normal form, and whether it names a secret or a person."""
    key = normal_key(text)
    return redact_text(cut(text), include_pii=pii) or "", key, _secret_key(key), _person_key(key)


# Documents repeat their keys: each is classified once (a bounded number remembered).
_key_facts_cached = functools.lru_cache(maxsize=_REMEMBERED)(_key_facts)


def display_name(name: str | None, *, include_pii: bool) -> str | None:
    """A finding's subject name: a person or an account, so replaced whole without personal data."""
    if name is None:
        return None
    if not include_pii:
        return PII_PLACEHOLDER
    return redact_text(cut(name), include_pii=True) if may_hold_secret_value(name) else name


def text_field(text: str | None, *, include_pii: bool) -> str | None:
    """A free-text column (a title, an operation's reason): scanned by shape."""
    if text is None:
        return None
    if include_pii and not may_hold_secret_value(text):
        return text
    return redact_text(cut(text), include_pii=include_pii)


def needs_scrub(json_text: str, *, include_pii: bool) -> bool:
    """Whether a JSON column needs :func:`scrub`: with personal data, only when it may hold a secret.

    Mirrors the COPY query's first look, so both paths scrub the same rows.
    """
    return not include_pii or may_hold_secret(json_text)


def count_placeholders(texts: Iterable[str | bytes]) -> dict[str, int]:
    """How many of each placeholder the texts hold: the replacements made, per category."""
    counts = dict.fromkeys(PLACEHOLDERS, 0)
    for text in texts:
        if isinstance(text, str):
            if "[re" in text:
                for category, placeholder in PLACEHOLDERS.items():
                    counts[category] += text.count(placeholder)
        elif b"[re" in text:
            for category, placeholder in PLACEHOLDERS.items():
                counts[category] += text.count(placeholder.encode("ascii"))
    return counts


# Every placeholder in one pattern: a stream of blocks is counted in one pass, not one per category.
PLACEHOLDERS_PATTERN = b"|".join(re.escape(p.encode("ascii")) for p in PLACEHOLDERS.values())
_PLACEHOLDER_BYTES = re.compile(PLACEHOLDERS_PATTERN)
# The placeholders a block holds, in order (the engine's C loop lists them).
find_placeholders = _PLACEHOLDER_BYTES.findall
_CATEGORY_OF = {p.encode("ascii"): category for category, p in PLACEHOLDERS.items()}


class PlaceholderTally:
    """Counts placeholders in a stream of blocks, including one split across two blocks.

    ``findall`` lists the placeholders a block holds (``PLACEHOLDERS_PATTERN``'s matches); an
    exporter may pass a faster engine's. A placeholder holds no second "[", so matches never
    overlap, and those inside the kept tail are the same whether or not a block follows.
    """

    _KEEP = max(len(p) for p in PLACEHOLDERS.values()) - 1

    def __init__(self, findall: Callable[[bytes], list[bytes]] | None = None) -> None:
        self.counts = dict.fromkeys(PLACEHOLDERS, 0)
        self._findall = findall or find_placeholders
        self._tail = b""

    def feed(self, block: bytes) -> None:
        if not block:
            return
        data = self._tail + block
        # The matches that end inside the new block: the tail's own were counted with the block before.
        found = Counter(self._findall(data))
        if self._tail:
            found.subtract(self._findall(self._tail))
        for placeholder, n in found.items():
            self.counts[_CATEGORY_OF[placeholder]] += n
        self._tail = data[-self._KEEP :]

    def add(self, counts: Mapping[str, int]) -> None:
        for category, n in counts.items():
            self.counts[category] += n


def statement(include_pii: bool) -> str:
    """One sentence for the page: what was removed, and what free text may still contain."""
    if include_pii:
        return (
            "Secrets (passwords, keys, tokens, signed URLs, connection strings) were removed; "
            "personal data was included as requested."
        )
    return (
        "Secrets and personal data (names and account identifiers, e-mail addresses, IP addresses, "
        "phone numbers and other values under unrecognised fields) were replaced with placeholders; "
        "names written inside free text such as titles and review prose may remain."
    )


def metadata_block(include_pii: bool, counts: Mapping[str, int]) -> dict[str, object]:
    """metadata.json's ``redaction`` object."""
    return {
        "policy_version": POLICY_VERSION,
        "include_pii": include_pii,
        "replacements": {category: int(counts.get(category, 0)) for category in PLACEHOLDERS},
        "placeholders": dict(PLACEHOLDERS),
        "limitation": LIMITATION,
    }
