"""What a device is and says: kinds, topic names, payload schemas and per-kind parsing (contract v1)."""
