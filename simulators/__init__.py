"""Simulated call buttons, gas and water sensors, pagers and a whole demo community.

They speak only MQTT and the HTTP API of contract v1, as real devices and phones do, and know
nothing of the gateway's insides (they import only `devices`). Run them with
`python -m simulators --help`.
"""
