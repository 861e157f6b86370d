"""First boot on Raspberry Pi OS: install the unit's files from its boot partition, once.

Which mechanism, and why. Raspberry Pi OS has had three: Bookworm's Raspberry Pi Imager writes a
``firstrun.sh`` to the FAT boot partition and appends ``systemd.run=/boot/firmware/firstrun.sh
systemd.run_success_action=reboot systemd.unit=kernel-command-line.target`` to ``cmdline.txt``;
images from late 2025 (Trixie) carry cloud-init and Imager writes ``user-data``/``network-config``
instead. We use the ``systemd.run=`` hook: it is a feature of systemd itself (the
systemd-run-generator), not of the distribution's provisioning tool, so the same two small shell
scripts work on Bookworm and on cloud-init images alike, need nothing installed beyond bash and
coreutils, and run before any network exists (a camera unit has none until it is on the mountain).
cloud-init, where present, still does its own first boot on the reboot that follows.

The scripts:

- ``firstrun.sh`` (boot partition root): runs Raspberry Pi Imager's own firstrun script first if the
  technician used Imager's settings (we keep it as ``firstrun-imager.sh``), then ``uncia/install.sh``;
  on success deletes ``uncia/`` from the boot partition (FAT has no file permissions: the secrets must
  not stay there), always removes itself and its ``cmdline.txt`` entry (so a failure cannot loop),
  and leaves its log in ``/var/log/uncia-firstboot.log`` and ``uncia-firstboot.log`` on the boot
  partition, where a technician's laptop can read it.
- ``uncia/install.sh``: creates the ``uncia`` system user and the device groups its services need,
  installs every file of ``uncia/manifest`` with its owner and mode, reloads udev, enables the
  services. It is idempotent: ``sudo bash /boot/firmware/uncia/install.sh`` on a running unit
  installs a new bundle (e.g. the gateway's broker files after a unit was re-provisioned).
"""

from __future__ import annotations

from dataclasses import dataclass

BOOT_MOUNT = "/boot/firmware"  # Bookworm and later
CMDLINE_HOOK = (
    f"systemd.run={BOOT_MOUNT}/firstrun.sh systemd.run_success_action=reboot "
    "systemd.unit=kernel-command-line.target"
)
FIRSTRUN_MARKER = "# uncia-firstrun"
IMAGER_FIRSTRUN = "firstrun-imager.sh"


@dataclass(frozen=True)
class Install:
    """One file to install on the unit: where, whose, which mode."""

    dest: str
    data: bytes
    mode: int = 0o644
    owner: str = "root"
    group: str = "root"

    @property
    def secret(self) -> bool:
        return not self.mode & 0o077


def manifest(installs: list[Install]) -> str:
    """``<mode> <owner> <group> <path>`` per file (paths and names come from provisioning, never spaces)."""
    lines = ["# mode owner group path -- read by install.sh; the file itself is files/<path>"]
    lines += [f"{i.mode:04o} {i.owner} {i.group} {i.dest}" for i in installs]
    return "\n".join(lines) + "\n"


def add_hook(cmdline: str) -> str:
    """``cmdline.txt`` with the first-boot hook appended (it must stay a single line)."""
    line = cmdline.strip().splitlines()[0] if cmdline.strip() else ""
    if CMDLINE_HOOK in line:
        return line + "\n"
    return f"{line} {CMDLINE_HOOK}".strip() + "\n"


FIRSTRUN = r"""#!/bin/bash
# uncia-firstrun
# uncia first boot: run once by systemd (systemd.run= in cmdline.txt), as root, before any network.
# Written by `uncia provision`; see docs/provisioning.md. It removes itself and its cmdline.txt entry.
set -u
BOOT=/boot/firmware
[ -f "$BOOT/cmdline.txt" ] || BOOT=/boot
LOG=/var/log/uncia-firstboot.log
{
  echo "uncia first boot: $(date -u +%Y-%m-%dT%H:%M:%SZ) from $BOOT"
  if [ -f "$BOOT/firstrun-imager.sh" ]; then
    echo "running Raspberry Pi Imager's first-run script first"
    mv "$BOOT/firstrun-imager.sh" /run/firstrun-imager.sh
    bash /run/firstrun-imager.sh || echo "Imager's first-run script failed (exit $?)"
  fi
  if bash "$BOOT/uncia/install.sh"; then
    # FAT has no file permissions: the unit's secrets must not stay on the boot partition.
    rm -rf "$BOOT/uncia"
    echo "uncia first boot: OK, rebooting"
  else
    echo "uncia first boot: FAILED. The bundle stays in $BOOT/uncia; after fixing the cause run"
    echo "  sudo bash $BOOT/uncia/install.sh"
  fi
} >>"$LOG" 2>&1
cp "$LOG" "$BOOT/uncia-firstboot.log" 2>/dev/null
sed -i 's| systemd\.run=[^ ]*||g; s| systemd\.run_success_action=[^ ]*||g; s| systemd\.unit=kernel-command-line\.target||g' "$BOOT/cmdline.txt"
rm -f "$BOOT/firstrun.sh"
sync
exit 0
"""


def render_firstrun() -> str:
    return FIRSTRUN


INSTALL = r"""#!/bin/bash
# uncia install: unit @UNIT@ (@ROLE@) of site @SITE@, written by `uncia provision`.
# Run as root: by firstrun.sh on first boot, or by hand on a running unit to install a new bundle:
#   sudo bash /boot/firmware/uncia/install.sh
# UNCIA_ROOT=<folder> installs below that folder and leaves users, udev and systemd alone (tests).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=${UNCIA_ROOT:-}
GROUPS_NEEDED="@GROUPS@"
SERVICES="@SERVICES@"
ROLE=@ROLE@
say() { echo "uncia install: $*"; }
live() { [ -z "$ROOT" ]; }

if live; then
  [ "$(id -u)" = 0 ] || { say "run me as root (sudo)"; exit 1; }
  for group in uncia $GROUPS_NEEDED; do
    getent group "$group" >/dev/null || groupadd --system "$group"
  done
  if ! id -u uncia >/dev/null 2>&1; then
    useradd --system --gid uncia --home-dir /var/lib/uncia --no-create-home --shell /usr/sbin/nologin uncia
    say "created the system user uncia"
  fi
  for group in $GROUPS_NEEDED; do usermod -a -G "$group" uncia; done
  install -d -o uncia -g uncia -m 0750 /var/lib/uncia
  if [ "$ROLE" = gateway ]; then
    getent passwd mosquitto >/dev/null || { say "mosquitto is not installed on this image"; exit 1; }
    if [ -f /etc/mosquitto/mosquitto.conf ] && [ ! -f /etc/mosquitto/mosquitto.conf.dist ]; then
      cp -p /etc/mosquitto/mosquitto.conf /etc/mosquitto/mosquitto.conf.dist
    fi
  fi
fi

install -d -m 0755 "$ROOT/etc/uncia"
while read -r mode owner group path; do
  case "$mode" in ''|'#'*) continue ;; esac
  if live; then
    install -D -m "$mode" -o "$owner" -g "$group" "$HERE/files$path" "$path"
  else
    install -D -m "$mode" "$HERE/files$path" "$ROOT$path"
  fi
  say "installed $path ($mode $owner:$group)"
done < "$HERE/manifest"

if live; then
  udevadm control --reload || true
  udevadm trigger --subsystem-match=tty || true
  systemctl daemon-reload
  systemctl try-restart systemd-journald.service || true  # the SD card's journal limits
  if [ "$ROLE" = gateway ]; then
    systemctl enable mosquitto.service
    systemctl try-restart mosquitto.service
  fi
  # shellcheck disable=SC2086 # one word per service
  systemctl enable $SERVICES
  # shellcheck disable=SC2086
  systemctl try-restart $SERVICES
fi
say "unit @UNIT@ installed"
"""


def render_install(site: str, unit_id: str, role: str, services: list[str], groups: list[str]) -> str:
    """install.sh for one unit. Every value is a checked name (no quotes, spaces or newlines)."""
    text = INSTALL
    for key, value in {
        "@SITE@": site,
        "@UNIT@": unit_id,
        "@ROLE@": role,
        "@SERVICES@": " ".join(services),
        "@GROUPS@": " ".join(groups),
    }.items():
        text = text.replace(key, value)
    return text
