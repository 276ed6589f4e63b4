"""The device side's exceptions. Each mixes in the builtin it behaves like, as gpiozero's do."""

from __future__ import annotations


class RlsmonError(Exception):
    """Base of every rlsmon device error."""


class SensorError(RlsmonError, OSError):
    """The IMU did not answer as expected."""


class SensorNotFound(SensorError):
    """No known chip answered at any of the probed I2C addresses."""


class RecordingFormatError(RlsmonError, ValueError):
    """A recording CSV is malformed. The message names the file and the line."""

    def __init__(self, path: str, line: int, problem: str) -> None:
        self.path, self.line, self.problem = path, line, problem
        super().__init__(f"{path}, line {line}: {problem}")


class ConfigError(RlsmonError, ValueError):
    """A config file is invalid. The message names the file, the key and what was expected."""

    def __init__(self, path: str, key: str, problem: str) -> None:
        self.path, self.key, self.problem = path, key, problem
        super().__init__(f"{path}: [{key}] {problem}")


class RecordingMismatchError(RlsmonError, ValueError):
    """Recordings given as the two legs of one night do not share any time."""


class EventsFormatError(RlsmonError, ValueError):
    """A file of scored events (EDF+ annotations or an LM CSV) is malformed. The message names the
    file, and the line when there is one."""

    def __init__(self, path: str, problem: str, line: int | None = None) -> None:
        self.path, self.line, self.problem = path, line, problem
        super().__init__(f"{path}, line {line}: {problem}" if line is not None else f"{path}: {problem}")
