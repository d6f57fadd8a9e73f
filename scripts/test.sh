#!/usr/bin/env bash
# Runs relance's whole test suite: unit tests, and end-to-end tests against the local
# PostgreSQL (127.0.0.1:5432, user postgres) and RabbitMQ (127.0.0.1:5672, guest/guest),
# delivering to a MailDev SMTP server that this script installs from tests/package-lock.json,
# a Prometheus (Debian's package, installed here when missing) for tests/dashboards.rs, and
# Chromium with chromedriver (Debian's chromium and chromium-driver, likewise) for
# tests/console_browser.rs, and Dovecot (Debian's dovecot-imapd, likewise) for tests/replies.rs.
set -euo pipefail
cd "$(dirname "$0")/.."

reachable() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
reachable 5432 || { echo "PostgreSQL is not answering on 127.0.0.1:5432" >&2; exit 1; }
reachable 5672 || { echo "RabbitMQ is not answering on 127.0.0.1:5672" >&2; exit 1; }
command -v node >/dev/null || { echo "Node.js (20 or later) is needed for the MailDev SMTP test server" >&2; exit 1; }

if [ ! -f tests/node_modules/maildev/bin/maildev ]; then
    npm ci --prefix tests --no-audit --no-fund
fi

# tests/dashboards.rs evaluates the Grafana dashboards' queries with a real Prometheus.
if [ -z "${RELANCE_TEST_PROMETHEUS:-}" ] && ! command -v prometheus >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus
    else
        echo "Prometheus is needed by tests/dashboards.rs: install Debian's prometheus package (apt-get install prometheus) or set RELANCE_TEST_PROMETHEUS" >&2
        exit 1
    fi
fi

# tests/console_browser.rs drives the console in headless Chromium through chromedriver.
if { [ -z "${RELANCE_TEST_CHROMIUM:-}" ] && ! command -v chromium >/dev/null; } ||
   { [ -z "${RELANCE_TEST_CHROMEDRIVER:-}" ] && ! command -v chromedriver >/dev/null; }; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver
    else
        echo "Chromium and chromedriver are needed by tests/console_browser.rs: install Debian's chromium and chromium-driver packages or set RELANCE_TEST_CHROMIUM and RELANCE_TEST_CHROMEDRIVER" >&2
        exit 1
    fi
fi

# tests/replies.rs reads the reply-to mailbox from a Dovecot of its own (Debian's dovecot-imapd).
if [ -z "${RELANCE_TEST_DOVECOT:-}" ] && [ ! -x /usr/sbin/dovecot ] && ! command -v dovecot >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends dovecot-imapd
    else
        echo "Dovecot is needed by tests/replies.rs: install Debian's dovecot-imapd package or set RELANCE_TEST_DOVECOT" >&2
        exit 1
    fi
fi

# The end-to-end suites that run services as separate processes use the relance binary.
cargo build --locked --bin relance
cargo test --workspace --locked "$@"
