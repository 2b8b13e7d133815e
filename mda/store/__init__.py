"""mda's store: users, mailboxes, messages, Sieve scripts in SQL (SQLite or PostgreSQL).

The only package that knows SQL. Callers frame transactions; store functions take the
session and never commit:

```python
store = Store(settings.database_url)
async with store.transaction() as session:       # BEGIN IMMEDIATE on SQLite; commits on exit
    user = await add_user(session, "joe@example.com", storage_limit=10 * 1024**2)
async with store.read() as session:
    usage = await quota_usage(session, "joe@example.com")
```

Schema changes only through alembic (`mda.store.migrate.upgrade(url)`). The exceptions are
drawn in `mda.store.errors`. `Session` is the session type store functions take; other
packages use that name and never import SQLAlchemy themselves.
"""

from sqlalchemy.ext.asyncio import AsyncSession as Session

from mda.store.blobs import (
    delete_orphan_blobs,
    drop_blob_if_unreferenced,
    release_blob,
    store_blob,
    sweep_orphan_blobs,
)
from mda.store.duplicates import claim_duplicate, duplicate_seen, record_duplicates
from mda.store.engine import Store, sqlite_path
from mda.store.errors import (
    AlreadyExists,
    InvalidAddress,
    InvalidInput,
    InvalidMailboxName,
    InvalidScriptName,
    MailboxExists,
    MailboxNotFound,
    MessageNotFound,
    NotFound,
    QuotaExceeded,
    ScriptActive,
    ScriptNotFound,
    StoreError,
    StoreUnavailable,
    UserExists,
    UserNotFound,
)
from mda.store.mailboxes import (
    MailboxSummary,
    allocate_uid,
    create_mailbox,
    ensure_mailbox,
    get_mailbox,
    list_mailboxes,
    mailbox_names,
    mailbox_special_uses,
)
from mda.store.messages import (
    MessageInfo,
    StoredMessage,
    append_message,
    delete_message,
    list_messages,
    message_bytes,
)
from mda.store.models import Mailbox, SieveError, SieveScript, User
from mda.store.names import (
    DEFAULT_SPECIAL_MAILBOXES,
    INBOX,
    normalize_address,
    normalize_mailbox_name,
    normalize_script_name,
    normalize_special_use,
    split_subaddress,
)
from mda.store.scripts import (
    activate_script,
    active_script,
    deactivate_scripts,
    delete_script,
    get_script,
    list_scripts,
    list_sieve_errors,
    put_script,
    record_sieve_error,
    rename_script,
)
from mda.store.users import (
    UNCHANGED,
    QuotaUsage,
    add_user,
    charge_quota,
    delete_user,
    find_user,
    get_user,
    list_users,
    quota_usage,
    release_quota,
    set_password_hash,
    set_quota,
)

__all__ = [
    "DEFAULT_SPECIAL_MAILBOXES", "INBOX", "UNCHANGED",
    "AlreadyExists", "InvalidAddress", "InvalidInput", "InvalidMailboxName",
    "InvalidScriptName", "MailboxExists", "MailboxNotFound", "MessageNotFound", "NotFound",
    "QuotaExceeded", "ScriptActive", "ScriptNotFound", "StoreError", "StoreUnavailable",
    "UserExists", "UserNotFound",
    "Mailbox", "MailboxSummary", "MessageInfo", "QuotaUsage", "SieveError", "SieveScript",
    "Session", "Store", "StoredMessage", "User",
    "activate_script", "active_script", "add_user", "allocate_uid", "append_message",
    "charge_quota", "create_mailbox", "deactivate_scripts", "delete_message",
    "delete_orphan_blobs", "delete_script", "delete_user", "drop_blob_if_unreferenced",
    "claim_duplicate", "duplicate_seen", "record_duplicates", "mailbox_special_uses", "normalize_special_use",
    "ensure_mailbox", "find_user", "get_mailbox", "get_script", "get_user", "list_mailboxes",
    "list_messages", "list_scripts", "list_sieve_errors", "list_users", "mailbox_names",
    "message_bytes", "normalize_address", "normalize_mailbox_name", "normalize_script_name",
    "put_script", "quota_usage", "record_sieve_error", "release_blob", "release_quota",
    "rename_script", "set_password_hash", "set_quota", "split_subaddress", "sqlite_path",
    "store_blob", "sweep_orphan_blobs",
]
