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
UNINSTALL=0
PURGE=0
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"   # the source tree (repository root)
PREFIX=/opt/rlsmon
VENV="$PREFIX/venv"
MANIFEST_LINES=()
CHANGED=0
# Config, credentials and data: an upgrade never touches them, and --uninstall keeps them unless
# --purge. Everything else the manifest lists (code, venv, units, udev and module files) is ours
# to replace and remove.
KEEP=(/etc/rlsmon /etc/mosquitto /var/lib/rlsmon)

usage() {
    cat <<EOF
Usage: $0 [--root DIR] [--no-venv] [--source DIR]
       $0 --uninstall [--purge] [--root DIR]

  Run again to upgrade: code and units are replaced, config, data and credentials kept, and what
  the previous version installed but this one does not is removed.

  --root DIR    install into the staging root DIR: no users, apt, systemctl or chown on this
                machine; DIR$PREFIX/install-manifest-*.txt lists every path with its intended
                mode and owner
  --no-venv     do not create $VENV or pip install the package (the slow, networked step);
                for staging tests, or when the venv is managed another way
  --source DIR  the rlsmon source tree to install from (default: this script's repository)
  --uninstall   stop and remove what the manifest lists: units, venv, code, udev and module files,
                the config.txt block; keep config, credentials and data (${KEEP[*]})
  --purge       with --uninstall: remove those too, and the service user
EOF
}

parse_args() {
    while [ $# -gt 0 ]; do
        case "$1" in
            --root) [ $# -ge 2 ] || { usage >&2; exit 2; }
                    mkdir -p "$2"; ROOT="$(cd "$2" && pwd)"; STAGING=1; shift 2 ;;
            --no-venv) WITH_VENV=0; shift ;;
            --uninstall) UNINSTALL=1; shift ;;
            --purge) PURGE=1; shift ;;
            --source) [ $# -ge 2 ] || { usage >&2; exit 2; }
                      SRC="$(cd "$2" && pwd)"; shift 2 ;;
            -h|--help) usage; exit 0 ;;
            *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
        esac
    done
    if [ "$PURGE" = 1 ] && [ "$UNINSTALL" = 0 ]; then
        echo "--purge goes with --uninstall" >&2; usage >&2; exit 2
    fi
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
    # An upgrade from a checkout with the same version number must still replace the code.
    "$ROOT$VENV/bin/pip" install --quiet --force-reinstall --no-deps "$SRC"
    record "venv - root:root $VENV"
}

kept() {  # kept PATH — whether PATH is config, credentials or data (under a KEEP directory)
    local k
    for k in "${KEEP[@]}"; do
        case "$1" in "$k"|"$k"/*) return 0 ;; esac
    done
    return 1
}

manifest_path() { printf '%s' "$ROOT$PREFIX/install-manifest-$1.txt"; }

remove_path() {  # remove_path KIND PATH — one manifest entry, never outside ROOT
    local dest="$ROOT$2"
    case "$2" in /*) ;; *) say "skipped $2: not an absolute path"; return 0 ;; esac
    case "$2" in *..*) say "skipped $2: contains .."; return 0 ;; esac
    case "$1" in
        file) [ -e "$dest" ] || [ -L "$dest" ] || return 0
              rm -f "$dest" "$dest.lock"   # the lock beside it is add-device's (server/provision.py)
              say "removed $2"; CHANGED=1 ;;
        dir)  [ -d "$dest" ] || return 0
              if [ "$2" = /var/lib/rlsmon ] || [ "$2" = /etc/rlsmon ]; then
                  rm -rf "$dest"; say "removed $2 and everything in it"; CHANGED=1   # ours alone
              elif rmdir "$dest" 2>/dev/null; then
                  say "removed $2"; CHANGED=1
              fi ;;
        venv) [ "$2" = "$VENV" ] && [ -d "$dest" ] || return 0   # rm -rf only ever our venv
              rm -rf "$dest"; say "removed $2"; CHANGED=1 ;;
        block) [ -f "$dest" ] && grep -qx '# BEGIN rlsmon' "$dest" || return 0
               # The block and the blank line append_once put before it.
               awk '/^# BEGIN rlsmon$/ {skip=1; held=0; next}
                    skip && /^# END rlsmon$/ {skip=0; next}
                    skip {next}
                    held {print ""; held=0}
                    /^$/ {held=1; next}
                    {print}
                    END {if (held) print ""}' "$dest" >"$dest.rlsmon-new"
               cat "$dest.rlsmon-new" >"$dest" && rm -f "$dest.rlsmon-new"
               say "removed the rlsmon block from $2"; CHANGED=1 ;;
    esac
}

remove_stale() {  # remove_stale NAME — an upgrade drops what the last install listed and this one does not
    local old kind mode owner path
    old="$(manifest_path "$1")"
    [ -f "$old" ] || return 0
    while read -r kind mode owner path; do
        [ "$kind" = file ] || continue   # a venv missing from this run is --no-venv, not gone
        kept "$path" && continue
        printf '%s\n' "${MANIFEST_LINES[@]}" | awk -v p="$path" '$4 == p {found=1} END {exit !found}' && continue
        case "$path" in /etc/systemd/system/*.service) host systemctl disable --now "${path##*/}" ;; esac
        remove_path "$kind" "$path"
    done < <(grep -v '^#' "$old")
}

_write_lines() {  # _write_lines DEST HEADER — HEADER, then MANIFEST_LINES sorted; only if it differs
    local tmp
    mkdir -p "$(dirname "$1")"
    tmp="$(mktemp)"
    { echo "$2"; printf '%s\n' "${MANIFEST_LINES[@]}" | LC_ALL=C sort -u; } >"$tmp"
    if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv "$tmp" "$1"; CHANGED=1; fi
    _own "$1" root:root 0644
}

write_manifest() {  # write_manifest NAME — sorted, no timestamps: identical runs give identical files
    remove_stale "$1"
    _write_lines "$(manifest_path "$1")" \
        "# kind mode owner:group path — written by install-$1.sh; '-' means not applicable"
}

uninstall() {  # uninstall NAME — manifest-driven; idempotent; keeps KEEP unless --purge
    local manifest kind mode owner path units=() left=()
    manifest="$(manifest_path "$1")"
    if [ ! -f "$manifest" ]; then
        say "nothing to uninstall: no $PREFIX/install-manifest-$1.txt (changes: 0)"
        return 0
    fi
    while read -r kind mode owner path; do
        case "$path" in /etc/systemd/system/*.service) units+=("${path##*/}") ;; esac
    done < <(grep -v '^#' "$manifest")
    if [ ${#units[@]} -gt 0 ]; then host systemctl disable --now "${units[@]}"; fi
    # Files before directories, deepest directories first, so each directory is empty when its
    # turn comes.
    while read -r kind mode owner path; do
        case "$kind" in
            file|venv|block|dir)
                if [ "$PURGE" = 0 ] && kept "$path"; then left+=("$kind $mode $owner $path"); continue; fi
                remove_path "$kind" "$path" ;;
            user) if [ "$PURGE" = 0 ]; then left+=("$kind $mode $owner $path"); continue; fi
                  if [ "$STAGING" = 0 ] && id -u "${path%% *}" >/dev/null 2>&1; then
                      userdel "${path%% *}"; say "removed user ${path%% *}"; CHANGED=1
                  fi ;;
            *) ;;  # groups and apt packages may serve others: never removed
        esac
    done < <(grep -v '^#' "$manifest" | awk '{print ($1 == "dir" ? 1 : 0), length($4), $0}' |
             sort -k1,1n -k2,2nr | cut -d' ' -f3-)
    host systemctl daemon-reload
    if [ ${#left[@]} -gt 0 ]; then
        # What stays is listed, so a later --uninstall --purge still finds it.
        MANIFEST_LINES=("${left[@]}")
        _write_lines "$manifest" "# kind mode owner:group path — left by install-$1.sh --uninstall; --purge removes it"
        say "kept config, credentials and data (${KEEP[*]}); --uninstall --purge removes them"
    else
        rm -f "$manifest"; rmdir "$ROOT$PREFIX" 2>/dev/null || true
        CHANGED=1
    fi
    say "uninstalled rlsmon $1 (changes: $CHANGED)"
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
