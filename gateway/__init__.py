"""The base-station gateway: collar telemetry in, everything relayed to the station broker."""
