#!/bin/bash
# The mysql:8.4 entry point's contract, on MariaDB (see the Dockerfile beside this file).
set -euo pipefail
log() { echo "[entrypoint] $*" >&2; }

# VAR from VAR or from the file VAR_FILE names (not both), as the official image does.
file_env() {
    local var=$1 file_var="${1}_FILE" default=${2:-}
    if [ -n "${!var:-}" ] && [ -n "${!file_var:-}" ]; then
        log "both $var and $file_var are set; set one"; exit 1
    fi
    local value=$default
    if [ -n "${!var:-}" ]; then value=${!var}
    elif [ -n "${!file_var:-}" ]; then value=$(< "${!file_var}"); fi
    export "$var"="$value"
    unset "$file_var"
}

# `docker run IMAGE --option` means `mysqld --option`.
if [ "${1:0:1}" = "-" ]; then set -- mysqld "$@"; fi
if [ "$1" != "mysqld" ] && [ "$1" != "mariadbd" ]; then exec "$@"; fi
shift
# MySQL 8 spellings MariaDB 10.11 does not know, and their MariaDB equivalents.
args=()
for arg in "$@"; do
    arg=${arg//utf8mb4_0900_ai_ci/utf8mb4_uca1400_ai_ci}
    args+=("$arg")
done
set -- mariadbd --user=mysql "${args[@]}"

SOCKET=/run/mysqld/mysqld.sock
if [ ! -d /var/lib/mysql/mysql ]; then
    file_env MYSQL_ROOT_PASSWORD
    file_env MYSQL_PASSWORD
    : "${MYSQL_DATABASE:=}" "${MYSQL_USER:=}" "${MYSQL_ROOT_HOST:=%}"
    if [ -z "$MYSQL_ROOT_PASSWORD" ] && [ -z "${MYSQL_ALLOW_EMPTY_PASSWORD:-}" ]; then
        log "database is uninitialized and MYSQL_ROOT_PASSWORD is not set"; exit 1
    fi
    log "initializing the data directory"
    mariadb-install-db --user=mysql --datadir=/var/lib/mysql --skip-test-db \
        --auth-root-authentication-method=normal --skip-name-resolve >/dev/null
    # The init server: socket only, so nothing reaches it (or reports healthy) before
    # the users exist.
    "$@" --skip-networking --socket="$SOCKET" --skip-log-bin >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 60); do
        mariadb-admin --socket="$SOCKET" --user=root ping >/dev/null 2>&1 && break
        sleep 0.5
    done
    sql() { mariadb --socket="$SOCKET" --user=root --binary-mode "$@"; }
    esc() { printf '%s' "$1" | sed "s/\\\\/\\\\\\\\/g; s/'/\\\\'/g"; }
    {
        echo "SET @@SESSION.SQL_LOG_BIN=0;"
        echo "ALTER USER 'root'@'localhost' IDENTIFIED BY '$(esc "$MYSQL_ROOT_PASSWORD")';"
        if [ "$MYSQL_ROOT_HOST" != "localhost" ]; then
            echo "CREATE USER 'root'@'$MYSQL_ROOT_HOST' IDENTIFIED BY '$(esc "$MYSQL_ROOT_PASSWORD")';"
            echo "GRANT ALL ON *.* TO 'root'@'$MYSQL_ROOT_HOST' WITH GRANT OPTION;"
        fi
        if [ -n "$MYSQL_DATABASE" ]; then
            echo "CREATE DATABASE IF NOT EXISTS \`$MYSQL_DATABASE\`;"
        fi
        if [ -n "$MYSQL_USER" ] && [ -n "$MYSQL_PASSWORD" ]; then
            echo "CREATE USER '$MYSQL_USER'@'%' IDENTIFIED BY '$(esc "$MYSQL_PASSWORD")';"
            [ -n "$MYSQL_DATABASE" ] && echo "GRANT ALL ON \`$MYSQL_DATABASE\`.* TO '$MYSQL_USER'@'%';"
        fi
        echo "FLUSH PRIVILEGES;"
    } | sql
    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
            *.sh)     log "running $f"; . "$f" ;;
            *.sql)    log "running $f"; sql --password="$MYSQL_ROOT_PASSWORD" ${MYSQL_DATABASE:+"$MYSQL_DATABASE"} < "$f" ;;
            *.sql.gz) log "running $f"; gunzip -c "$f" | sql --password="$MYSQL_ROOT_PASSWORD" ${MYSQL_DATABASE:+"$MYSQL_DATABASE"} ;;
        esac
    done
    mariadb-admin --socket="$SOCKET" --user=root --password="$MYSQL_ROOT_PASSWORD" shutdown
    wait "$pid" || true
    unset MYSQL_ROOT_PASSWORD MYSQL_PASSWORD
    log "init done; starting the server"
fi
exec "$@"
