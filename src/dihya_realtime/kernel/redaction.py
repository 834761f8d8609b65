"""Outbound redaction: secrets never leave the server, whatever their key is called.

Every payload the server sends (acks, emits, HTTP API JSON) and every audit detail passes
:meth:`Redactor.redact`, which returns a cleaned copy and the paths it redacted (the caller
audits them). Three rules, by shape rather than by exact name:

**Secret key names.** A key is split into words (case, ``_``, ``-``, ``.``, spaces and
camelCase: ``clientSecret`` → ``client secret``, ``X-API-KEY`` → ``x api key``,
``pass_word`` → ``pass word``) and its value is secret when a run of consecutive words spells a
secret word (:data:`SECRET_WORDS` plus the ``DIHYA_RT_REDACT_KEYS`` entries, normalised the
same way: ``api_key`` → ``apikey`` matches ``x-api-key``, ``apiKey``, ``APIKEY``).
Whole words only: ``author``, ``secretary``, ``tokenizer``, ``passwordless`` are ordinary.
A key *describing* a secret rather than holding it is ordinary too: when words follow the
secret word and the last one is a descriptor (:data:`DESCRIPTORS`: ``count``, ``length``,
``type``, ``expires``, ``url``, ``name``, ``id`` …), as in ``token_count``,
``password_min_length``, ``token_type``, ``token_url``. ``tokens`` (plural) is not a secret
word: ``max_tokens``, ``prompt_tokens``, ``tokens_used`` count LLM tokens; a token *value* in
such a list is still caught by the value detectors. ``true``/``false``/``null`` under a secret
key are kept (``has_password: true`` reveals nothing); any other value, object or list is
replaced whole by ``"[redacted]"``.

**Name/value pairs.** In a list of pairs (``[["Authorization", "Bearer …"]]``, header
lists), a two-item list whose first item is a secret key name has its second item redacted.
A lone two-item list is not a pair (an audit row's ``paths: ["clientSecret", "link"]``).

**Secret values under any key.** Strings of at least :data:`MIN_SECRET_LENGTH` characters are
searched for known secret formats (:data:`_FORMATS`): JWTs, PEM private keys, AWS access key
ids, GitHub, GitLab, Slack, Stripe, Google, OpenAI/Anthropic, npm, SendGrid, Hugging Face,
DigitalOcean, Shopify and PyPI tokens, ``Bearer``/``Basic`` credentials, ``user:password@``
in URLs, Slack webhook URLs, ``access_token=``-style parameters; and a value that is exactly
40 mixed-case standard-base64 characters with a ``/`` or ``+`` (an AWS secret access key).
Only the matching span is replaced, so ``"use AKIA… now"`` becomes ``"use [redacted] now"``.

Cost: the walk runs on every outbound payload. Key verdicts are cached (a bounded LRU per
redactor); values are searched in two stages (:data:`_ANCHORS`, one precompiled regex the
engine can skip through, then the formats only where an anchor is), and only when they are
long enough to hold a secret. ``data:`` URIs (inline images) are not searched. A string
with more than :data:`MAX_ANCHORS` candidate places is replaced whole rather than searched,
so no payload costs more than a few milliseconds to clean.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from typing import Any

REDACTED = "[redacted]"
# Leaves: nothing to walk into, so no path string is built for them (the walk runs on every
# outbound payload and every audit detail; most values are these).
_LEAVES = (str, int, float, bool, type(None))
_KEEP = (bool, type(None))  # under a secret key these reveal nothing

SECRET_WORDS = frozenset({
    "password", "passwd", "passphrase", "passwords", "pwd",
    "secret", "secrets", "clientsecret",
    "token", "accesstoken", "refreshtoken", "idtoken", "authtoken", "bearer",
    "apikey", "apikeys", "accesskey", "secretkey", "privatekey", "privkey", "signingkey",
    "authorization", "cookie", "cookies", "setcookie",
    "credential", "credentials", "creds",
    "session", "sessionid", "sessid", "sessionkey", "sessiontoken",
    "jwt", "otp",
})
"""Built in, always applied: ``DIHYA_RT_REDACT_KEYS`` adds words, it cannot remove these."""

DESCRIPTORS = frozenset({
    "count", "counts", "total", "num", "number", "used", "usage", "limit", "limits", "max",
    "min", "length", "len", "size", "type", "types", "kind", "name", "names", "id", "ids",
    "url", "uri", "endpoint", "path", "file", "expiry", "expires", "expiration", "ttl",
    "lifetime", "timeout", "at", "in", "policy", "required", "enabled", "valid", "present",
    "set", "version", "format", "algorithm", "alg", "scheme", "prefix", "fingerprint",
    "rotated", "created", "updated", "status", "field", "header", "label", "hint", "consent",
})
"""A last word that makes a key describe a secret rather than hold it (``token_count``)."""

MIN_SECRET_LENGTH = 16
"""Shorter strings are never searched by the value detectors (``https://u:p@host`` and
``Basic dTpwYXNz`` are about the shortest shapes they find)."""
MAX_KEY_LENGTH = 128
"""Longer dict keys are not names: not split, not cached (a client controls keys)."""
KEY_CACHE_SIZE = 4096
MAX_ANCHORS = 256
"""A string with more places where a secret could start is replaced whole: each costs a
little Python, and only a string built to be costly has that many (64 KB of ``n=n=…`` took
33 ms to search; capped, under 1 ms)."""
_MAX_NGRAM = 5  # words joined to spell one secret word: "aws secret access key" needs 4

_WORDS_RE = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
_NOT_WORD_RE = re.compile(r"[^0-9A-Za-z]+")


def _behind(*prefixes: str) -> str:
    return "|".join(f"(?<={p})" for p in prefixes)


# Stage 1, on every long string: find *anchors*, the rare characters where a secret format
# shows (the "." of ".eyJ", the "_" of "ghp_", the "-" of "xoxb-", "://", "=" after a secret
# parameter name, "AKIA", "Bearer "). Every branch starts with one literal character, so the
# regex engine skips from candidate to candidate in C; a cheap one-character look-behind comes
# before the longer ones. (One regex with a look-behind boundary on every format was 30 times
# slower on a typical publication: no branch could be skipped.)
_ANCHORS = re.compile(
    r"\.(?:(?=eyJ)|(?<=[9G]\.)(?:" + _behind(r"ya29\.", r"SG\.") + "))"
    r"|-(?:(?=----BEGIN )|(?<=[abposrtXki]-)(?:" + _behind(
        r"xox[abposr]-", r"gl[a-z]{2}-", r"gl[a-z]{3}-", r"gl[a-z]{4}-", r"gl[a-z]{5}-",
        "GOCSPX-", "sk-", "pypi-") + "))"
    r"|_(?:(?<=[pousrbkcmfta]_)(?:" + _behind(
        r"gh[pousr]_", "github_", r"[sr]k_", "whsec_", "npm_", "hf_", "dop_",
        r"shp[a-z]{2}_") + "))"
    r"|:(?=//)"
    r"|=(?<=[nytdeg]=)"
    r"|A(?=KIA|SIA|BIA|CCA|Iza)"
    r"|B(?=earer\s|asic\s)|b(?=earer\s|asic\s)"
)
# Stage 2, only where an anchor was found: the formats, matched at the token's start.
_FORMATS = re.compile("|".join([
    r"(?P<jwt>eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*)",
    r"(?P<pem>-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----)",
    r"(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Za-z0-9_-])",
    r"gh[pousr]_[A-Za-z0-9]{30,255}|github_pat_[A-Za-z0-9_]{22,255}",
    r"gl(?:pat|dt|rt|ptt|ft|imt|agent|oas|soat|cbt)-[A-Za-z0-9_-]{20,}",
    r"(?P<slack>xox[abposr]-[A-Za-z0-9-]{10,})",
    r"(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}|whsec_[A-Za-z0-9]{24,}",
    r"AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])|GOCSPX-[A-Za-z0-9_-]{20,}|ya29\.[0-9A-Za-z_-]{20,}",
    r"(?P<sk>sk-[A-Za-z0-9_-]{20,})",
    r"(?:npm_[A-Za-z0-9]{36}|hf_[A-Za-z]{30,}|dop_v1_[a-f0-9]{64}|shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}"
    r"|pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}|SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43})"
    r"(?![A-Za-z0-9_-])",
    # Bearer needs a digit ("bearer instruments" is English); Basic is checked in _scheme
    r"(?P<scheme>[Bb]earer\s+(?=[A-Za-z0-9._~+/-]*[0-9])[A-Za-z0-9._~+/-]{12,}=*"
    r"|[Bb]asic\s+[A-Za-z0-9+/]{6,}={0,2})",
]))
_PEM_END = re.compile(r"-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")
_URL = re.compile(r"://(?:(?P<userinfo>[^\s/?#@:]*:[^\s/?#@]+)@"
                  r"|hooks\.slack\.com/(?P<hook>(?:services|workflows)/[A-Za-z0-9/_-]{20,}))")
_PARAM_VALUE = re.compile(r"=([^&#\s]{6,})")
_PARAM_NAMES = frozenset({
    "token", "access_token", "refresh_token", "id_token", "auth_token", "api_key", "apikey",
    "client_secret", "secret", "password", "passwd", "signature", "sig",
    "aws_secret_access_key", "x-amz-signature", "x-amz-credential", "private_key",
})
_AWS_SECRET = re.compile(r"[A-Za-z0-9+/]{40}")
_DIGIT = re.compile(r"[0-9]")
_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_NAME_CHARS = _TOKEN_CHARS - {"-"}
_LETTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def _token_start(text: str, pos: int, chars: frozenset[str], limit: int) -> int:
    """Where the run of ``chars`` that ends at ``pos`` starts; -1 when longer than
    ``limit`` (inside a blob: not a token of its own)."""
    start = pos
    floor = pos - limit
    while start > 0 and text[start - 1] in chars:
        start -= 1
        if start < floor:
            return -1
    return start


def _scheme(text: str) -> str | None:
    """``Bearer x`` / ``Basic x`` → the scheme and ``[redacted]``; ``None`` when a Basic
    value is not base64 of ``user:password``."""
    scheme, value = text.split(None, 1)
    if scheme.lower() == "basic":
        try:
            if b":" not in base64.b64decode(value, validate=True):
                return None
        except (binascii.Error, ValueError):
            return None
    return f"{scheme} {REDACTED}"


def _find(text: str) -> list[tuple[int, int, str]] | None:
    """The secret spans of ``text``: ``(start, end, replacement)``, in order, disjoint;
    ``None`` when ``text`` has more than :data:`MAX_ANCHORS` anchors."""
    spans: list[tuple[int, int, str]] = []
    done = 0
    for count, anchor in enumerate(_ANCHORS.finditer(text)):
        if count >= MAX_ANCHORS:
            return None
        pos = anchor.start()
        if pos < done:
            continue
        char = text[pos]
        span: tuple[int, int, str] | None = None
        if char == ":":
            m = _URL.match(text, pos)
            if m is not None:
                group = "userinfo" if m.group("userinfo") is not None else "hook"
                end = m.end() if group == "hook" else m.end("userinfo")
                span = (m.start(group), end, REDACTED)
        elif char == "=":
            start = _token_start(text, pos, _NAME_CHARS | {"-"}, 32)
            if start >= 0 and text[start:pos].lower() in _PARAM_NAMES:
                m = _PARAM_VALUE.match(text, pos)
                if m is not None:
                    span = (m.start(1), m.end(1), REDACTED)
        else:
            if char in "AbB":
                start = pos if pos == 0 or text[pos - 1] not in (
                    _LETTERS if char != "A" else _TOKEN_CHARS) else -1
            elif char == "-" and text.startswith("-----BEGIN ", pos):
                start = pos
            else:
                start = _token_start(text, pos, _TOKEN_CHARS, 512 if char == "." else 12)
            m = _FORMATS.match(text, start) if start >= 0 else None
            if m is not None and m.end() > pos:
                if m.lastgroup == "pem":
                    end_m = _PEM_END.search(text, m.end())
                    span = (m.start(), end_m.end() if end_m else len(text), REDACTED)
                elif m.lastgroup in ("slack", "sk"):
                    # real tokens carry digits; "xoxo-hugs-and-kisses" does not
                    if _DIGIT.search(text, m.start(), m.end()):
                        span = (m.start(), m.end(), REDACTED)
                elif m.lastgroup == "scheme":
                    replacement = _scheme(m.group(0))
                    if replacement is not None:
                        span = (m.start(), m.end(), replacement)
                else:
                    span = (m.start(), m.end(), REDACTED)
        if span is not None:
            spans.append(span)
            done = span[1]
    return spans


def redact_text(text: str) -> str:
    """``text`` with every secret-shaped span replaced (the same object when none is).

    ``data:`` URIs (inline images and files) are content, not credentials: not searched.
    """
    if len(text) < MIN_SECRET_LENGTH:
        return text
    if len(text) == 40 and _AWS_SECRET.fullmatch(text) and _aws_secret_like(text):
        return REDACTED  # an AWS secret access key, alone as a value
    if text.isalnum() and "A" not in text:
        return text  # ids, hex digests, words: only "AKIA…"/"AIza…" shapes are alphanumeric
    if text.startswith("data:") or _ANCHORS.search(text) is None:
        return text
    spans = _find(text)
    if spans is None:
        return REDACTED  # built to be costly to search: not sent rather than searched
    if not spans:
        return text
    parts: list[str] = []
    last = 0
    for start, end, replacement in spans:
        parts.append(text[last:start])
        parts.append(replacement)
        last = end
    parts.append(text[last:])
    return "".join(parts)


def _aws_secret_like(text: str) -> bool:
    """Random standard base64: upper case, lower case and digits (hex digests and words have
    not) and a ``/`` or ``+`` (URL-safe base64 such as paging cursors has neither, so a
    40-character cursor is never taken for a key; 3 AWS keys in 4 have one)."""
    return (("/" in text or "+" in text) and any(c.isupper() for c in text)
            and any(c.islower() for c in text) and any(c.isdigit() for c in text))


def normalise(word: str) -> str:
    """``"X-Api_Key"`` → ``"xapikey"``: how setting words are compared with key words."""
    return _NOT_WORD_RE.sub("", word).lower()


def key_words(key: str) -> list[str]:
    """``"clientSecretV2"`` → ``["client", "secret", "v", "2"]``."""
    return [w.lower() for w in _WORDS_RE.findall(key)]


def _classify(key: str, words: frozenset[str]) -> bool:
    parts = key_words(key)
    n = len(parts)
    descriptive = n > 1 and parts[-1] in DESCRIPTORS
    for i in range(n):
        spelled = ""
        for j in range(i, min(n, i + _MAX_NGRAM)):
            spelled += parts[j]
            if spelled in words and (j == n - 1 or not descriptive):
                return True
    return False


def is_secret_key(key: str, extra: Iterable[str] = ()) -> bool:
    """Does a value under ``key`` hold a secret (with the built-in words plus ``extra``)?"""
    return _classify(key, SECRET_WORDS | {normalise(w) for w in extra})


class Redactor:
    """Redacts by key name (built-in words plus ``keys``), by pair and by value shape."""

    def __init__(self, keys: Iterable[str] = ()) -> None:
        self.words = SECRET_WORDS | {w for w in (normalise(k) for k in keys) if w}
        # key → verdict, at most KEY_CACHE_SIZE entries (emptied when full: clients choose
        # keys, so the cache must not grow with them); a dict lookup is the hot path's cost
        self._verdicts: dict[str, bool] = {}

    def is_secret_key(self, key: str) -> bool:
        verdict = self._verdicts.get(key)
        if verdict is None:
            if len(key) > MAX_KEY_LENGTH:
                return False
            verdict = _classify(key, self.words)
            if len(self._verdicts) >= KEY_CACHE_SIZE:
                self._verdicts.clear()
            self._verdicts[key] = verdict
        return verdict

    def key_cache_size(self) -> int:
        return len(self._verdicts)

    def redact(self, value: Any) -> tuple[Any, list[str]]:
        """Return ``(clean_value, redacted_paths)``; ``value`` itself is never modified."""
        paths: list[str] = []
        clean = self._walk(value, "", paths)
        return clean, paths

    def _walk(self, value: Any, path: str, paths: list[str]) -> Any:
        if isinstance(value, str):
            clean = redact_text(value) if len(value) >= MIN_SECRET_LENGTH else value
            if clean is not value:
                paths.append(path)
            return clean
        if isinstance(value, dict):
            return self._walk_dict(value, path, paths)
        if isinstance(value, list | tuple):
            return self._walk_list(value, path, paths)
        return value

    def _walk_dict(self, value: dict, path: str, paths: list[str]) -> Any:
        out: dict[Any, Any] | None = None
        verdicts = self._verdicts
        for key, item in value.items():
            secret = verdicts.get(key)
            if secret is None:
                secret = type(key) is str and self.is_secret_key(key)
            if secret and not isinstance(item, _KEEP):
                new_item: Any = REDACTED
                paths.append(f"{path}.{key}" if path else key)
            elif type(item) is str:
                new_item = redact_text(item) if len(item) >= MIN_SECRET_LENGTH else item
                if new_item is not item:
                    paths.append(f"{path}.{key}" if path else key)
            elif type(item) in _LEAVES:
                new_item = item
            else:
                new_item = self._walk(item, f"{path}.{key}" if path else str(key), paths)
            if new_item is not item and out is None:
                out = dict(value)
            if out is not None:
                out[key] = new_item
        return value if out is None else out

    def _pair(self, pair: list | tuple, path: str, paths: list[str]) -> Any:
        """An item of a list of pairs (``[["Cookie", "…"], …]``, header lists): a secret
        name redacts its value. Only inside a list: a lone two-item list such as an audit row's
        ``paths: ["clientSecret", "link"]`` is not a pair."""
        name, item = pair
        if type(name) is str and not isinstance(item, _KEEP) and self.is_secret_key(name):
            paths.append(f"{path}[1]")
            return [name, REDACTED]
        return self._walk_list(pair, path, paths)

    def _walk_list(self, value: list | tuple, path: str, paths: list[str]) -> Any:
        items = [
            item if type(item) in _LEAVES and (type(item) is not str
                                               or len(item) < MIN_SECRET_LENGTH)
            else self._pair(item, f"{path}[{i}]", paths) if type(item) in (list, tuple)
            and len(item) == 2
            else self._walk(item, f"{path}[{i}]", paths)
            for i, item in enumerate(value)
        ]
        if all(a is b for a, b in zip(items, value, strict=True)):
            return value
        return items
