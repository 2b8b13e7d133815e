#!/bin/sh
# Configure Postfix from the environment, then run the command (`postfix start-fg`).
#   MTA_HOSTNAME     myhostname (default mx.example.org)
#   MTA_DOMAINS      virtual_mailbox_domains, comma or space separated (default example.org)
#   MTA_DB_HOST, MTA_DB_NAME, MTA_DB_USER, MTA_DB_PASSWORD
#                    where virtual_mailbox_maps finds mda's users (default postgres, mda, mda)
#   MAIL_CONFIG      Postfix's configuration directory (default /etc/postfix), as for every
#                    Postfix command
set -eu

postconf -e "myhostname = ${MTA_HOSTNAME:-mx.example.org}" \
            "virtual_mailbox_domains = ${MTA_DOMAINS:-example.org}"

maps="${MAIL_CONFIG:-/etc/postfix}/pgsql-mailboxes.cf"
umask 027
{
    printf 'hosts = %s\n' "${MTA_DB_HOST:-postgres}"
    printf 'dbname = %s\n' "${MTA_DB_NAME:-mda}"
    printf 'user = %s\n' "${MTA_DB_USER:-mda}"
    printf 'password = %s\n' "${MTA_DB_PASSWORD:-}"
    grep -v '^#' "$maps.in"
} > "$maps"
chgrp postfix "$maps"

# Creates the queue directories that are missing and checks the configuration.
postfix check
exec "$@"
