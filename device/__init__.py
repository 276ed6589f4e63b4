"""rlsmon device side: the bedside daemon that reads the ankle IMU and scores PLMs at the edge."""

__version__ = "0.1.0"
