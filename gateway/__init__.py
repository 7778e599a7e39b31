"""The running program: settings, storage, MQTT, scheduler, HTTP API and pages, CLI."""
