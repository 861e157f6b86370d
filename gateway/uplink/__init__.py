"""Uplinks: what the station record holds, sent on to where conservation teams work.

- `gateway.uplink.earthranger`: collar fixes and camera-trap images to an EarthRanger server
  (its sensors API), batched, from a durable queue (`gateway.uplink.state`).
- `gateway.uplink.iridium`: a byte-budgeted digest (`gateway.uplink.digest`) over an Iridium SBD
  modem (`gateway.uplink.sbd`) where the station has no internet, within a daily credit budget.
- `gateway.uplink.settings`: the ``[uplink]`` config section.

Each uplink runs in its own thread (`start`/`stop`), reads the record through its own
`RecordReader`, and keeps what it has sent in the uplink state file, never in the record.
See docs/uplinks.md.
"""
