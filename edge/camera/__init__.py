"""The camera unit: an infrared (NoIR) camera, a PIR sensor and a 940 nm IR illuminator on a Pi.

Capture goes through one interface, `edge.camera.backend.CameraBackend`: the real camera
(`edge.camera.picamera.Picamera2Camera`) and the simulated one (`edge.camera.simulated.SimulatedCamera`)
both stream a low-resolution picture continuously and take full-resolution stills on demand.

Modules, by what they are in the field:

- `backend`: `Frame`, `Exposure`, `CameraBackend`, `CameraError` and friends.
- `simulated`: a camera that draws an IR night scene (and a snow leopard when told) as real JPEGs.
- `picamera`: the Raspberry Pi camera through picamera2 (imported only when one is opened).
- `ring`: `PreTriggerBuffer`, the last seconds of low-resolution frames before a trigger.
- `exif`: EXIF time, GPS position and camera/unit ids written into a JPEG without re-encoding it.
- `thumbnail`: a small JPEG under a byte budget, for the radio/MQTT link.
- `sidecar`: the JSON written beside each image, and the power-cut-safe way to write both.
- `pir`, `illuminator`, `daylight`: the motion sensor, the IR lamp and day/night (separate modules).

Nothing is imported here, so ``import edge.camera.ring`` stays cheap and needs no camera stack.
"""
