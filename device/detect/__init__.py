"""Pure, streaming detection: `SampleBlock`s in, leg movements, postures and gaps out.

No I/O and no clock. One `LegDetector` per leg; the same code runs live and offline.
"""

from device.detect.detector import DetectorOutput, LegDetector
from device.detect.events import Interval, LegMovement, PostureSegment

__all__ = ["DetectorOutput", "Interval", "LegDetector", "LegMovement", "PostureSegment"]
