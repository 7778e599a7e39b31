"""Rules (a reading + what we know -> decisions), the alert lifecycle and escalation plans."""
