"""rlsmon server side: the MQTT collector and the clinic dashboard."""

__version__ = "0.1.0"
