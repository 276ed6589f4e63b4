#!/usr/bin/env bash
# Install the rlsmon clinic server (broker config, collector, dashboard) on Debian 12+ (idempotent).
#   sudo systemd/install-server.sh [--broker-host mqtt.clinic.example]
#   systemd/install-server.sh --root /tmp/stage --no-venv    # a staging root, touching nothing else
#   sudo systemd/install-server.sh                  # again, after git pull: the upgrade
#   sudo systemd/install-server.sh --uninstall [--purge]     # keeps config, data and keys unless --purge
# Without certificates it makes a private CA for the broker (devices get its ca.crt when they are
# provisioned). Then add each device with `rlsmon-server add-device` and a login with `add-user`.
source "$(dirname "$0")/install-lib.sh"

BROKER_HOST="$(hostname -f 2>/dev/null || hostname)"
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --broker-host) [ $# -ge 2 ] || { usage >&2; exit 2; }; BROKER_HOST="$2"; shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done
parse_args "${args[@]+"${args[@]}"}"

# After the install: each part answers, one PASS/FAIL line each, like `rlsmon-device doctor`.
server_self_check() {  # server_self_check CONFIG CA_FILE
    local failed=0 web_host web_port mqtt_port unit i
    read -r web_host web_port mqtt_port < <("$VENV/bin/python" - "$1" <<'PY'
import sys, tomllib
c = tomllib.load(open(sys.argv[1], "rb"))
w, m = c.get("web", {}), c.get("mqtt", {})
print(w.get("host", "127.0.0.1"), w.get("port", 8000), m.get("port", 8883))
PY
    )
    verdict() {  # verdict OK WHAT FIX
        if [ "$1" = 0 ]; then say "PASS $2"; else say "FAIL $2: $3"; failed=1; fi
    }
    for unit in mosquitto rlsmon-collector rlsmon-web; do
        for i in $(seq 30); do systemctl is-active --quiet "$unit" && break; sleep 1; done
        systemctl is-active --quiet "$unit"; verdict $? "$unit is running" "journalctl -u $unit"
    done
    openssl s_client -connect "localhost:$mqtt_port" -CAfile "$2" -verify_return_error -brief \
        </dev/null >/dev/null 2>&1
    verdict $? "the broker answers TLS on port $mqtt_port with a certificate from $2" \
        "check certfile/keyfile in /etc/mosquitto/conf.d/rlsmon.conf"
    for i in $(seq 30); do
        "$VENV/bin/python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)' \
            "http://$web_host:$web_port/login" 2>/dev/null && break
        sleep 1
    done
    "$VENV/bin/python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)' \
        "http://$web_host:$web_port/login" 2>/dev/null
    verdict $? "the dashboard serves http://$web_host:$web_port/login" "journalctl -u rlsmon-web"
    journalctl -u rlsmon-collector --since "-2min" --no-pager 2>/dev/null | grep -q "connected to"
    verdict $? "the collector is connected to the broker" "journalctl -u rlsmon-collector"
    [ "$failed" = 0 ] && say "next: rlsmon-server add-user <name>; rlsmon-server add-device <id>"
    return "$failed"
}

USER_NAME=rlsmon-server
CONFIG=/etc/rlsmon/server.toml

if [ "$UNINSTALL" = 1 ]; then
    uninstall server
    # --purge took the broker's rlsmon listener away with /etc/mosquitto/conf.d/rlsmon.conf.
    [ "$STAGING" = 1 ] || [ "$PURGE" = 0 ] || systemctl try-restart mosquitto.service
    exit 0
fi
BROKER_PASSWORDS=/etc/mosquitto/rlsmon.passwd
COLLECTOR_PASSWORD=/etc/rlsmon/collector-password
CA=/etc/rlsmon/ca
CERTS=/etc/mosquitto/certs

apt_install python3-venv python3-pip mosquitto mosquitto-clients openssl

ensure_group mosquitto
ensure_user "$USER_NAME" /var/lib/rlsmon
install_base server "$USER_NAME" server

# The broker: our listener, ACL and password file beside the distribution's mosquitto.conf.
install_file "$SRC/firmware_config/mosquitto.conf" /etc/mosquitto/conf.d/rlsmon.conf 0644 root:root keep
install_file "$SRC/firmware_config/mosquitto.acl" /etc/mosquitto/rlsmon.acl 0640 root:mosquitto keep
# A kept older config gets what receipts and one-identity-per-client need (see the files' comments).
add_line_once() {  # add_line_once FILE LINE...: append the lines unless the file has the last one
    local file="$1"; shift
    grep -qxF "${@: -1}" "$ROOT$file" && return
    printf '%s\n' "" "$@" >>"$ROOT$file"
    say "added '${*: -1}' to $file"; CHANGED=1
}
add_line_once /etc/mosquitto/conf.d/rlsmon.conf "use_username_as_clientid true"
add_line_once /etc/mosquitto/rlsmon.acl "pattern read rlsmon/v1/%u/receipt"
add_line_once /etc/mosquitto/rlsmon.acl "user collector" "topic write rlsmon/v1/+/receipt"
if [ ! -e "$ROOT$BROKER_PASSWORDS" ]; then
    mkdir -p "$(dirname "$ROOT$BROKER_PASSWORDS")"; : >"$ROOT$BROKER_PASSWORDS"; CHANGED=1
fi
_own "$ROOT$BROKER_PASSWORDS" root:mosquitto 0640
record "file 0640 root:mosquitto $BROKER_PASSWORDS"

# The collector's own broker account: a random password, made once, in a file only it can read.
if [ ! -s "$ROOT$COLLECTOR_PASSWORD" ]; then
    (umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$ROOT$COLLECTOR_PASSWORD")
    mosquitto_passwd -b "$ROOT$BROKER_PASSWORDS" collector "$(cat "$ROOT$COLLECTOR_PASSWORD")"
    _own "$ROOT$BROKER_PASSWORDS" root:mosquitto 0640   # mosquitto_passwd rewrote it
    say "made the collector's broker password"; CHANGED=1
fi
_own "$ROOT$COLLECTOR_PASSWORD" "root:$USER_NAME" 0640
record "file 0640 root:$USER_NAME $COLLECTOR_PASSWORD"

# TLS for the broker. A private CA is enough: only our devices and collector connect, and each
# device receives ca.crt when it is provisioned. Existing certificates are never replaced.
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
if [ ! -e "$ROOT$CA.crt" ]; then
    (umask 077; openssl req -x509 "${ec[@]}" -keyout "$ROOT$CA.key" -out "$ROOT$CA.crt" -days 3650 \
        -subj "/CN=rlsmon clinic CA" -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null)
    say "made a private CA: $CA.crt"; CHANGED=1
fi
if [ ! -e "$ROOT$CERTS/server.crt" ] && [ -e "$ROOT$CA.key" ]; then
    mkdir -p "$ROOT$CERTS"
    ext="$(mktemp)"
    printf 'subjectAltName=DNS:%s,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\nbasicConstraints=critical,CA:FALSE\n' \
        "$BROKER_HOST" >"$ext"
    (umask 077; openssl req "${ec[@]}" -keyout "$ROOT$CERTS/server.key" -subj "/CN=$BROKER_HOST" 2>/dev/null |
        openssl x509 -req -CA "$ROOT$CA.crt" -CAkey "$ROOT$CA.key" -CAcreateserial -CAserial "$ROOT$CA.srl" \
            -days 825 -extfile "$ext" -out "$ROOT$CERTS/server.crt" 2>/dev/null)
    rm -f "$ext"
    say "made the broker's certificate for $BROKER_HOST, localhost and 127.0.0.1"; CHANGED=1
fi
[ -e "$ROOT$CA.key" ] && { _own "$ROOT$CA.key" root:root 0600; record "file 0600 root:root $CA.key"; }
[ -e "$ROOT$CA.srl" ] && { _own "$ROOT$CA.srl" root:root 0600; record "file 0600 root:root $CA.srl"; }
_own "$ROOT$CA.crt" root:root 0644; record "file 0644 root:root $CA.crt"
ensure_dir "$CERTS" 0755 root:root
if [ -e "$ROOT$CERTS/server.key" ]; then
    _own "$ROOT$CERTS/server.key" root:mosquitto 0640; record "file 0640 root:mosquitto $CERTS/server.key"
    _own "$ROOT$CERTS/server.crt" root:root 0644; record "file 0644 root:root $CERTS/server.crt"
fi

install_file "$SRC/systemd/rlsmon-collector.service" /etc/systemd/system/rlsmon-collector.service 0644 root:root
install_file "$SRC/systemd/rlsmon-web.service" /etc/systemd/system/rlsmon-web.service 0644 root:root

write_manifest server
if [ "$STAGING" = 1 ]; then
    say "staged into $ROOT (changes: $CHANGED); owners are in $ROOT$PREFIX/install-manifest-server.txt"
    exit 0
fi

systemctl restart mosquitto.service
systemctl daemon-reload
systemctl enable rlsmon-collector.service rlsmon-web.service
systemctl restart rlsmon-collector.service rlsmon-web.service
server_self_check "$CONFIG" "$CA.crt"
