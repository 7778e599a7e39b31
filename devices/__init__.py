"""What a device is and says: kinds, topics, payload schemas, per-kind parsing (contract v1)."""
