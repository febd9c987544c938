"""SECRET_KEY: loaded, checked, generated, and the keyed hash every stored secret goes through.

Links, console sessions and sign-in sessions keep only ``keyed_hash(SECRET_KEY, purpose, secret)``
of what a browser holds, so a copy of the database opens nothing. A key must be long and look
random; ``vm-manager serve --generate-secret`` writes one into ``<config dir>/secret_key`` (0600).

"Look random" is judged by zxcvbn, Dropbox's password-strength estimator: the guesses an attacker
needs who tries words, names, keyboard runs, sequences, repeated blocks, dates and l33t first.
Against its model, where a random character costs 10 guesses, a key must need at least
10^(0.8 x its length) guesses: random keys need about 10^(length) (hex, the least varied, never
fewer than 10^(0.84 x length) in 30,000 random 32-digit keys), and words, runs and repeats far
fewer (a passphrase of common words about 10^(0.5 x length)). Separators do not help a
passphrase: its letters and digits alone are judged too.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path

from core.errors import ConfigError
from core.settings import Settings
from core.text import count

OLD_DEFAULT_KEY = "dev-secret-change-me"  # what the older web version shipped: never a key
MIN_KEY_LENGTH = 32
MIN_KEY_SYMBOLS = 8  # different characters a key must hold
MAX_KEY_REPEAT = 2  # no one character may be half the key or more
MIN_GUESS_DIGITS_PER_CHARACTER = 0.8  # log10(zxcvbn's guesses) / length, at least
MIN_PLAIN_LENGTH = 16  # letters and digits judged alone from this many (fewer: too few to judge)
ESTIMATED_PREFIX = 64  # zxcvbn's work grows with the square of the length: 64 random characters suffice
KEY_FILE = "secret_key"
_SEPARATORS = re.compile(r"[\W_]+")
# What zxcvbn found in a key, for the message (never the matched text: it is part of the key).
_PATTERNS = {"dictionary": "words", "spatial": "keyboard runs", "repeat": "repeated blocks",
             "sequence": "runs like abcd or 1234", "date": "dates", "regex": "years"}


def keyed_hash(key: bytes, purpose: str, secret: str) -> bytes:
    """HMAC-SHA256 of ``secret`` under ``key`` (SECRET_KEY), told apart by ``purpose``: what the
    database keeps of every token, session secret and cookie."""
    return hmac.new(key, as_bytes(f"{purpose}:{secret}"), hashlib.sha256).digest()


def as_bytes(text: str) -> bytes:
    """Any text as UTF-8, lone surrogates included, one to one: a cookie's or a header's bytes that
    are not UTF-8 reach the server as surrogates, and hashing or comparing them must not fail."""
    return text.encode("utf-8", "surrogatepass")


def key_problem(key: str) -> str:
    """Why ``key`` cannot sign links, or ""."""
    if key == OLD_DEFAULT_KEY:
        return f"SECRET_KEY is the old default {OLD_DEFAULT_KEY!r}"
    if len(key) < MIN_KEY_LENGTH:
        return f"SECRET_KEY is shorter than {MIN_KEY_LENGTH} characters"
    return _not_random(key)


def _not_random(key: str) -> str:
    """A simple diversity rule: a key of a few characters repeated (40 spaces, ``k`` * 40) is no
    key. The hex of ``openssl rand -hex 32`` (16 symbols over 64 characters) passes by far."""
    if not key.strip():
        return "SECRET_KEY is only blanks"
    distinct = len(set(key))
    if distinct < MIN_KEY_SYMBOLS:
        return (f"SECRET_KEY has only {count(distinct, 'different character')} "
                f"(a random key has at least {MIN_KEY_SYMBOLS})")
    top = max(key.count(c) for c in set(key))
    if top * MAX_KEY_REPEAT >= len(key):
        return f"SECRET_KEY is mostly one character repeated ({top} of its {len(key)})"
    return _guessable(key)


def _guessable(key: str) -> str:
    """zxcvbn's verdict (see the module's docstring) on the key's first characters, and on its
    letters and digits alone (a passphrase's separators are no secret)."""
    from zxcvbn import zxcvbn  # 20-50 ms to import: only when a key is judged

    plain = _SEPARATORS.sub("", key)
    for text in (key, plain) if plain != key and len(plain) >= MIN_PLAIN_LENGTH else (key,):
        sample = text[:ESTIMATED_PREFIX]
        estimate = zxcvbn(sample, max_length=ESTIMATED_PREFIX)
        needed = MIN_GUESS_DIGITS_PER_CHARACTER * len(sample)
        if estimate["guesses_log10"] < needed:
            found = {match["pattern"] for match in estimate["sequence"]}
            kinds = [name for pattern, name in _PATTERNS.items() if pattern in found] or ["patterns"]
            made_of = " and ".join([", ".join(kinds[:-1]), kinds[-1]] if len(kinds) > 1 else kinds)
            return (f"SECRET_KEY is plainly not random: it is made of {made_of} (zxcvbn guesses it in "
                    f"about 10^{estimate['guesses_log10']:.0f} tries, where a random key takes "
                    f"10^{needed:.0f} or more)")
    return ""


def key_file(settings: Settings) -> Path:
    return settings.config_dir / KEY_FILE


def load_secret_key(settings: Settings, *, demo: bool = False) -> str:
    """SECRET_KEY, else ``<config dir>/secret_key``; on the demo lab a random one will do.

    Raises ConfigError naming SECRET_KEY when there is none fit for use.
    """
    hint = f"set SECRET_KEY (at least {MIN_KEY_LENGTH} random characters) or run " \
           "`vm-manager serve --generate-secret`"
    problem = ""
    if settings.web.secret_key:
        problem = key_problem(settings.web.secret_key)
        if not problem:
            return settings.web.secret_key
    else:
        path = key_file(settings)
        try:
            key = path.read_text().strip()
        except FileNotFoundError:
            problem = f"SECRET_KEY is unset and there is no {path}"
        else:
            if path.stat().st_mode & 0o077:
                problem = f"{path} (the SECRET_KEY file) is readable by others: chmod 600 it"
            else:
                problem = key_problem(key).replace("SECRET_KEY", f"the SECRET_KEY in {path}")
                if not problem:
                    return key
    if demo:
        return secrets.token_urlsafe(48)
    raise ConfigError(f"{problem}: {hint}")


def generate_secret_key(settings: Settings) -> tuple[str, bool]:
    """Write a random key to ``<config dir>/secret_key`` (0600) unless a good one is there.

    Returns the key and whether it was made now. Raises ConfigError when SECRET_KEY is set.
    """
    if settings.web.secret_key:
        raise ConfigError("SECRET_KEY is set: --generate-secret writes a key file only when it is unset")
    path = key_file(settings)
    with contextlib.suppress(ConfigError):
        return load_secret_key(settings), False
    key = secrets.token_urlsafe(48)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{KEY_FILE}.{os.getpid()}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key + "\n")
    os.replace(temp, path)
    return key, True
