"""The base station's hub: record, registry, alerts, commands, web."""
