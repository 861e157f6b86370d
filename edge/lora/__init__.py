"""LoRa: AT-command modem drivers, the compact collar payload, airtime and duty-cycle accounting."""
