"""Provisioning: from a site inventory to units that report at the gateway, and to nobody else.

Run on the station's technician laptop (or the gateway) as ``uncia provision``; docs/provisioning.md
walks through it. Modules, in the order the data flows:

- `inventory`: load and check the site inventory (TOML); errors name the unit and the field.
- `site_state`: the site CA, every identity issued and every revocation, kept next to the inventory.
- `credentials`: generated passwords hashed in Mosquitto's format, certificates and the CRL.
- `unit_config`: each unit's config file (what `edge.config.load_config` reads).
- `acl`, `mosquitto_conf`: the station broker's ACL and mosquitto.conf.
- `udev`: stable device names for GPS receivers and LoRa modems; ModemManager kept away.
- `firstboot`: the first-boot hook for Raspberry Pi OS and the installer it runs.
- `plan`: all of the above for the units asked for; `bundle`: writing it (boot partition, folder,
  .tar.gz), secrets 0600.
"""
