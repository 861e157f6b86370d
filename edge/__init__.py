"""The field runtime shared by every uncia unit: serial sources, NMEA, config, MQTT relay, outbox."""
