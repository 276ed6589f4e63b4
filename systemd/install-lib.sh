# Shared by install-device.sh and install-server.sh (sourced, not run).
#
# Every file or directory the installers manage goes through install_file / ensure_dir, which
# write only when something differs (so a second run changes nothing), set the mode, chown only
# when running as root on the real machine, and record "kind mode owner:group path" in a manifest
# under /opt/rlsmon. With --root DIR everything lands under DIR instead: no useradd, no apt, no
# systemctl, no chown; the manifest records the owners the real install would set, so a test can
# check every file, owner and mode without touching the machine.

set -euo pipefail

ROOT=""            # staging root; "" is the real machine
STAGING=0
WITH_VENV=1
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"   # the source tree (repository root)
PREFIX=/opt/rlsmon
VENV="$PREFIX/venv"
MANIFEST_LINES=()
CHANGED=0

usage() {
    cat <<EOF
Usage: $0 [--root DIR] [--no-venv] [--source DIR]

  --root DIR    install into the staging root DIR: no users, apt, systemctl or chown on this
                machine; DIR$PREFIX/install-manifest-*.txt lists every path with its intended
                mode and owner
  --no-venv     do not create $VENV or pip install the package (the slow, networked step);
                for staging tests, or when the venv is managed another way
  --source DIR  the rlsmon source tree to install from (default: this script's repository)
EOF
}

parse_args() {
    while [ $# -gt 0 ]; do
        case "$1" in
            --root) [ $# -ge 2 ] || { usage >&2; exit 2; }
                    mkdir -p "$2"; ROOT="$(cd "$2" && pwd)"; STAGING=1; shift 2 ;;
            --no-venv) WITH_VENV=0; shift ;;
            --source) [ $# -ge 2 ] || { usage >&2; exit 2; }
                      SRC="$(cd "$2" && pwd)"; shift 2 ;;
            -h|--help) usage; exit 0 ;;
            *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
        esac
    done
    if [ "$STAGING" = 0 ] && [ "$(id -u)" != 0 ]; then
        echo "run as root (sudo $0), or stage with --root DIR" >&2
        exit 1
    fi
}

say() { printf '%s\n' "$*"; }

# Run a command that changes the host; in staging only say what would run.
host() {
    if [ "$STAGING" = 1 ]; then say "staging, skipped: $*"; else "$@"; fi
}

record() { MANIFEST_LINES+=("$*"); }

_own() {  # _own PATH OWNER:GROUP MODE — mode always, owner only for real root installs; only if it differs
    if [ "$(stat -c %a "$1")" != "${3#0}" ]; then chmod "$3" "$1"; CHANGED=1; fi
    if [ "$STAGING" = 0 ] && [ "$(id -u)" = 0 ] && [ "$(stat -c %U:%G "$1")" != "$2" ]; then
        chown "$2" "$1"; CHANGED=1
    fi
}

ensure_group() {  # ensure_group NAME
    record "group - - $1"
    if [ "$STAGING" = 0 ] && ! getent group "$1" >/dev/null; then
        groupadd --system "$1"; say "created group $1"; CHANGED=1
    fi
}

ensure_user() {  # ensure_user NAME HOME [SUPPLEMENTARY_GROUPS,comma,separated]
    record "user - - $1 home=$2 groups=${3:-}"
    [ "$STAGING" = 0 ] || return 0
    if ! id -u "$1" >/dev/null 2>&1; then
        useradd --system --user-group --home-dir "$2" --no-create-home --shell /usr/sbin/nologin "$1"
        say "created user $1"; CHANGED=1
    fi
    if [ -n "${3:-}" ]; then
        local g
        for g in ${3//,/ }; do
            id -nG "$1" | tr ' ' '\n' | grep -qx "$g" || { usermod -a -G "$g" "$1"; CHANGED=1; }
        done
    fi
}

ensure_dir() {  # ensure_dir PATH MODE OWNER:GROUP
    local dest="$ROOT$1"
    [ -d "$dest" ] || { mkdir -p "$dest"; CHANGED=1; }
    _own "$dest" "$3" "$2"
    record "dir $2 $3 $1"
}

install_file() {  # install_file SRC DEST MODE OWNER:GROUP [keep]
    local src="$1" dest="$ROOT$2"
    mkdir -p "$(dirname "$dest")"
    if [ -e "$dest" ] && [ "${5:-}" = keep ]; then
        say "kept existing $2"
    elif ! cmp -s "$src" "$dest" 2>/dev/null; then
        cp "$src" "$dest.rlsmon-new" && mv "$dest.rlsmon-new" "$dest"
        say "installed $2"; CHANGED=1
    fi
    _own "$dest" "$4" "$3"
    record "file $3 $4 $2"
}

append_once() {  # append_once FILE FRAGMENT — FRAGMENT holds "# BEGIN rlsmon" … "# END rlsmon"
    local dest="$ROOT$1"
    mkdir -p "$(dirname "$dest")"
    [ -e "$dest" ] || : >"$dest"
    if grep -qx '# BEGIN rlsmon' "$dest"; then
        say "$1 already has the rlsmon block"
    else
        { printf '\n'; sed -n '/^# BEGIN rlsmon$/,/^# END rlsmon$/p' "$2"; } >>"$dest"
        say "appended the rlsmon block to $1"; CHANGED=1
    fi
    record "block - - $1"
}

apt_install() {  # apt_install PACKAGE… — only what is missing, so a complete machine never calls apt
    local missing=() p
    for p in "$@"; do record "apt - - $p"; done
    if [ "$STAGING" = 1 ]; then say "staging, skipped: apt-get install $*"; return 0; fi
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    [ ${#missing[@]} = 0 ] && return 0
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    CHANGED=1
}

make_venv() {  # make_venv EXTRA — the package from $SRC with its extra, in its own venv (PEP 668)
    if [ "$WITH_VENV" = 0 ]; then say "skipped the venv (--no-venv)"; return 0; fi
    [ -x "$ROOT$VENV/bin/python" ] || python3 -m venv "$ROOT$VENV"
    "$ROOT$VENV/bin/pip" install --quiet --upgrade pip
    "$ROOT$VENV/bin/pip" install --quiet "$SRC[$1]"
    record "venv - root:root $VENV"
}

write_manifest() {  # write_manifest NAME — sorted, no timestamps: identical runs give identical files
    local tmp dest="$ROOT$PREFIX/install-manifest-$1.txt"
    mkdir -p "$(dirname "$dest")"
    tmp="$(mktemp)"
    {
        echo "# kind mode owner:group path — written by install-$1.sh; '-' means not applicable"
        printf '%s\n' "${MANIFEST_LINES[@]}" | LC_ALL=C sort -u
    } >"$tmp"
    if cmp -s "$tmp" "$dest"; then rm -f "$tmp"; else mv "$tmp" "$dest"; CHANGED=1; fi
    _own "$dest" root:root 0644
}

install_base() {  # install_base EXTRA USER CONFIG_NAME — venv, README, config (kept), state directory
    ensure_dir "$PREFIX" 0755 root:root
    make_venv "$1"
    install_file "$SRC/README.md" "$PREFIX/README.md" 0644 root:root
    # The config holds no secret (passwords live in their own files); the service user only reads it.
    ensure_dir /etc/rlsmon 0755 root:root
    install_file "$SRC/firmware_config/$3.example.toml" "/etc/rlsmon/$3.toml" 0640 "root:$2" keep
    # data_dir / database.path; the units' StateDirectory=rlsmon keeps the same owner and mode.
    ensure_dir /var/lib/rlsmon 0750 "$2:$2"
}

reload_units() {  # reload_units UNIT… — enable, and restart only what already runs (an upgrade)
    host systemctl daemon-reload
    host systemctl enable "$@"
    host systemctl try-restart "$@"
}
