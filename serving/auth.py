"""API keys: read from a mounted Secret file (one key per line) and/or an env var, compared in constant time.

Keys are never logged or echoed; errors say only whether a key was missing or wrong."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path

from mlrollout.serving.errors import Forbidden, HeaderLookup, Unauthorized


class AuthConfigError(RuntimeError):
    pass


@dataclass(frozen=True)
class ApiKeys:
    keys: tuple[bytes, ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    @classmethod
    def from_sources(cls, file: str | None, env_value: str | None) -> ApiKeys:
        found: list[str] = []
        if file:
            path = Path(file)
            try:
                found += path.read_text().splitlines()
            except OSError as exc:
                raise AuthConfigError(f"cannot read API key file {path}: {exc.strerror}") from None
        if env_value:
            found += env_value.split(",")
        keys = tuple(dict.fromkeys(k.strip().encode() for k in found if k.strip() and not k.startswith("#")))
        if (file or env_value) and not keys:
            raise AuthConfigError("API keys were configured but none were found (empty file or variable)")
        return cls(keys)

    def check(self, headers: HeaderLookup) -> None:
        """Raise Unauthorized without a key, Forbidden with a wrong one; no-op when auth is off."""
        if not self.keys:
            return
        presented = presented_key(headers)
        if presented is None:
            raise Unauthorized(
                "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
                field="Authorization",
            )
        candidate = presented.encode()
        # Compare against every key so timing does not reveal which key (or how many) matched.
        matched = False
        for key in self.keys:
            matched |= hmac.compare_digest(candidate, key)
        if not matched:
            raise Forbidden("API key is not valid", field="Authorization")


def presented_key(headers: HeaderLookup) -> str | None:
    header = headers.get("Authorization")
    if header:
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return ""  # present but not a bearer key: treated as a wrong key
    key = headers.get("X-API-Key")
    return key.strip() if key is not None else None
