"""Care records: elders, people and pairing, health records, services and the points ledger."""
