"""mda: a Sieve-filtering mail delivery agent (LMTP in, SQL mailboxes out)."""

__version__ = "0.1.0"
