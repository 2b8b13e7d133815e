"""The store's exceptions: one hierarchy, raised by `mda.store` and nothing else.

```
StoreError                      base of everything the store raises on purpose
 ├── StoreUnavailable           the database cannot be reached or used (connection refused,
 │                              locked beyond the busy timeout, schema not migrated); retry later
 ├── InvalidInput               the caller handed a value the store refuses (a ValueError too)
 │    ├── InvalidAddress        not a usable mail address (RFC 5321 §4.1.2)
 │    ├── InvalidMailboxName    not a usable mailbox name
 │    └── InvalidScriptName     not a usable Sieve script name (RFC 5804 §1.6)
 ├── NotFound                   a named thing does not exist (a LookupError too)
 │    ├── UserNotFound
 │    ├── MailboxNotFound
 │    ├── MessageNotFound
 │    └── ScriptNotFound
 ├── AlreadyExists              a unique name is taken
 │    ├── UserExists
 │    └── MailboxExists
 ├── ScriptActive               the script is the user's active one and cannot be deleted
 ├── QuotaExceeded             storing would take the user over a storage or message limit
 └── ScriptQuotaExceeded       storing a Sieve script would pass a per-user script quota
```

The store never formats protocol replies: callers (delivery, the CLI, ManageSieve) map these
exceptions to their own answers.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every exception the store raises on purpose."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or used right now; nothing was written.

    Raised for connection failures, a lock held beyond the busy timeout, or a schema that was
    never migrated. Delivery answers 451 4.3.0; the CLI prints the reason.
    """


class InvalidInput(StoreError, ValueError):
    """A value handed to the store is malformed; the message says which and why."""


class InvalidAddress(InvalidInput):
    """Not a usable mail address (RFC 5321 §4.1.2 Mailbox syntax)."""


class InvalidMailboxName(InvalidInput):
    """Not a usable mailbox name (empty, control characters, empty hierarchy level ...)."""


class InvalidScriptName(InvalidInput):
    """Not a usable Sieve script name (RFC 5804 §1.6: no control characters, not empty)."""


class NotFound(StoreError, LookupError):
    """A named object does not exist."""


class UserNotFound(NotFound):
    """No user has this address."""


class MailboxNotFound(NotFound):
    """The user has no mailbox with this name."""


class MessageNotFound(NotFound):
    """The mailbox holds no message with this UID."""


class ScriptNotFound(NotFound):
    """The user has no Sieve script with this name."""


class AlreadyExists(StoreError):
    """A unique name is already taken."""


class UserExists(AlreadyExists):
    """A user with this address already exists."""


class MailboxExists(AlreadyExists):
    """The user already has a mailbox with this name."""


class ScriptActive(StoreError):
    """The script is active; deactivate it (or activate another) before deleting it.

    RFC 5804 §2.10 DELETESCRIPT: "the server MUST NOT allow the client to delete an active
    script".
    """


class QuotaExceeded(StoreError):
    """Storing would take the user over a limit; nothing was stored or counted.

    Attributes:
        address: the user's address.
        size: bytes the refused store needed.
        storage_used, storage_limit: bytes used and allowed (limit None = unlimited).
        messages_used, messages_limit: messages stored and allowed (None = unlimited).
    """

    def __init__(self, address: str, size: int, storage_used: int, storage_limit: int | None,
                 messages_used: int, messages_limit: int | None) -> None:
        self.address = address
        self.size = size
        self.storage_used = storage_used
        self.storage_limit = storage_limit
        self.messages_used = messages_used
        self.messages_limit = messages_limit
        super().__init__(
            f"{address}: storing {size} bytes exceeds quota (storage {storage_used}/"
            f"{_limit(storage_limit)} bytes, messages {messages_used}/{_limit(messages_limit)})")


def _limit(value: int | None) -> str:
    return "unlimited" if value is None else str(value)


class ScriptQuotaExceeded(StoreError):
    """Storing a Sieve script would pass one of the user's script quotas; nothing was stored.

    RFC 5804 §1.3 response codes: `QUOTA/MAXSCRIPTS`, `QUOTA/MAXSIZE`, `QUOTA/MAXSTORAGE`.

    Attributes:
        limit: which quota: "scripts" (number of scripts), "size" (octets of one script) or
            "storage" (octets of all the user's scripts together).
        used: scripts or octets the user would have, or the script's size for "size".
        allowed: the quota.
    """

    def __init__(self, limit: str, used: int, allowed: int) -> None:
        self.limit = limit
        self.used = used
        self.allowed = allowed
        what = {"scripts": f"this would make {used} scripts; at most {allowed} are allowed",
                "size": f"the script is {used} octets; at most {allowed} are allowed",
                "storage": f"all scripts together would take {used} octets; at most "
                           f"{allowed} are allowed"}[limit]
        super().__init__(f"Sieve script quota: {what}")
