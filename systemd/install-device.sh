#!/usr/bin/env bash
# Install the rlsmon bedside daemon on Raspberry Pi OS Bookworm or Debian 12+ (idempotent).
#   sudo systemd/install-device.sh              # this Pi
#   systemd/install-device.sh --root /tmp/stage --no-venv   # a staging root, touching nothing else
#   sudo systemd/install-device.sh                  # again, after git pull: the upgrade
#   sudo systemd/install-device.sh --uninstall [--purge]     # keeps config and data unless --purge
# Then edit /etc/rlsmon/device.toml, add /etc/rlsmon/ca.crt and /etc/rlsmon/mqtt-password
# (from `rlsmon-server add-device` on the server) and `systemctl start rlsmon-device`.
source "$(dirname "$0")/install-lib.sh"
parse_args "$@"

USER_NAME=rlsmon-device
CONFIG=/etc/rlsmon/device.toml

if [ "$UNINSTALL" = 1 ]; then
    uninstall device
    [ "$STAGING" = 1 ] || udevadm control --reload
    exit 0
fi

apt_install python3-venv python3-pip i2c-tools

# /dev/i2c-* and /dev/gpiochip* belong to these groups (see 60-rlsmon-i2c-gpio.rules).
ensure_group i2c
ensure_group gpio
ensure_user "$USER_NAME" /var/lib/rlsmon i2c,gpio

install_base device "$USER_NAME" device
# The broker password (from provisioning): readable by the service user and nobody else. 0640
# root:rlsmon-device rather than 0600, since the daemon runs as rlsmon-device, never as root.
if [ -f "$ROOT/etc/rlsmon/mqtt-password" ]; then
    install_file "$ROOT/etc/rlsmon/mqtt-password" /etc/rlsmon/mqtt-password 0640 "root:$USER_NAME" keep
fi

install_file "$SRC/systemd/rlsmon-device.service" /etc/systemd/system/rlsmon-device.service 0644 root:root
install_file "$SRC/systemd/60-rlsmon-i2c-gpio.rules" /etc/udev/rules.d/60-rlsmon-i2c-gpio.rules 0644 root:root
# /dev/i2c-1 exists only once i2c-dev is loaded; raspi-config does the same through /etc/modules.
install_file "$SRC/systemd/rlsmon-i2c.conf" /etc/modules-load.d/rlsmon-i2c.conf 0644 root:root

# I2C on, at the 100 kHz the ankle cable needs. raspi-config turns I2C on (and loads the module
# now); the fragment pins the bus speed either way, which raspi-config does not set.
if [ "$STAGING" = 0 ] && command -v raspi-config >/dev/null; then
    raspi-config nonint do_i2c 0
fi
if [ -d "$ROOT/boot/firmware" ] || [ "$STAGING" = 1 ]; then
    append_once /boot/firmware/config.txt "$SRC/firmware_config/config.txt"
elif [ -f /boot/config.txt ]; then
    append_once /boot/config.txt "$SRC/firmware_config/config.txt"   # before Bookworm
else
    say "no /boot/firmware/config.txt: not a Raspberry Pi? Turn I2C on at 100 kHz by hand."
fi

write_manifest device
if [ "$STAGING" = 1 ]; then
    say "staged into $ROOT (changes: $CHANGED); owners are in $ROOT$PREFIX/install-manifest-device.txt"
    exit 0
fi

host udevadm control --reload
host udevadm trigger --subsystem-match=i2c-dev --subsystem-match=gpio
host modprobe i2c-dev || true
reload_units rlsmon-device.service

say "checking the install with rlsmon-device doctor, as the service user:"
if runuser -u "$USER_NAME" -- env LG_WD=/var/lib/rlsmon \
        "$VENV/bin/rlsmon-device" doctor --config "$CONFIG"; then
    say "all good: systemctl start rlsmon-device"
else
    say "doctor found problems (above); fix them, then: systemctl start rlsmon-device"
fi
