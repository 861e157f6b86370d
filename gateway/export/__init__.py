"""Exports of the station record for the tools conservation teams work in.

- `movebank`: collar fixes as a Movebank location CSV plus its reference-data CSV.
- `camtrap`: camera-unit captures as a Camtrap DP 1.0.2 package (deployments, media, observations,
  datapackage.json).
- `geojson`: collar tracks, optional fix points and camera sites as one RFC 7946 FeatureCollection.

Every export reads the record through a `RecordReader`, takes an `ExportFilter` (time range, collars,
camera units) and is deterministic: the same record and arguments give the same bytes (rows sorted,
numbers in fixed formats, no "now" unless passed in). `uncia export` (uncia/commands/export.py) is
the command-line shell; docs/exports.md says what each file holds and how to load it.
"""

from gateway.export.animals import AnimalRegistry, Deployment
from gateway.export.camtrap import CamtrapResult, export_camtrap
from gateway.export.filters import ExportError, ExportFilter, NothingToExport, parse_time
from gateway.export.geojson import GeoJsonResult, export_geojson
from gateway.export.movebank import MovebankResult, export_movebank

__all__ = [
    "AnimalRegistry",
    "CamtrapResult",
    "Deployment",
    "ExportError",
    "ExportFilter",
    "GeoJsonResult",
    "MovebankResult",
    "NothingToExport",
    "export_camtrap",
    "export_geojson",
    "export_movebank",
    "parse_time",
]
