"""An exchange account's API credentials: encrypted at rest, masked everywhere else.

The key and the secret are stored together as one SecretBox (MultiFernet) ciphertext in
``trading_account.credentials_encrypted``: ``tradepilot keys rotate`` re-encrypts the column,
and neither value ever appears in a row, an answer or a log line in clear. In memory they
live in a :class:`Credentials`, whose ``repr`` shows neither (a traceback or a debug log of
an object holding one cannot leak them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from tradepilot.core.errors import Unprocessable
from tradepilot.core.secrets_box import SecretBox, SecretUnreadable


@dataclass(frozen=True, slots=True)
class Credentials:
    api_key: str = field(repr=False)
    secret: str = field(repr=False)

    def __repr__(self) -> str:
        return "Credentials(api_key=***, secret=***)"

    def for_ccxt(self) -> dict[str, str]:
        return {"apiKey": self.api_key, "secret": self.secret}


class CredentialsUnreadable(Unprocessable):
    """No configured encryption key decrypts the account's credentials (a key retired too early)."""

    code, title = "exchange_credentials_unreadable", "The account's exchange credentials cannot be read"


def seal(box: SecretBox, credentials: Credentials) -> str:
    return box.encrypt(json.dumps({"api_key": credentials.api_key, "secret": credentials.secret}))


def unseal(box: SecretBox, token: str | None) -> Credentials:
    if token is None:
        raise CredentialsUnreadable("This account has no exchange credentials.")
    try:
        data = json.loads(box.decrypt(token))
    except (SecretUnreadable, ValueError):
        raise CredentialsUnreadable("The account's exchange credentials cannot be decrypted; an operator must "
                                    "restore the encryption key or the account must be re-added.") from None
    return Credentials(api_key=data["api_key"], secret=data["secret"])
