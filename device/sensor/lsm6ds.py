"""The LSM6DS family: register map, FIFO formats and a table of chip variants keyed by WHO_AM_I.

Both the readers and the emulator take every chip fact from here, so they cannot disagree, and a new
variant is a new `ChipVariant` entry in `VARIANTS`, never a new branch in the pipeline.

Sources (register addresses, bit positions, codes and sensitivities):
- LSM6DSOX datasheet DS12814 rev 3: §9 "Register mapping", §10 "Register description",
  table 2 "Mechanical characteristics" (sensitivities); ST header lsm6dsox_reg.h (lsm6dsox-pid).
- LSM6DSO32 datasheet DS13141: table 2 (the ±4..±32 g scales); §9 (same map as the LSM6DSOX).
- ISM330DHCX datasheet DS13012: §9, §10 (CTRL2_G FS_4000), table 2; ST header ism330dhcx_reg.h.
- LSM6DS3TR-C datasheet DS12124: §9, §10 (FIFO_CTRL1..5, FIFO_STATUS1..4), table 3; ST header
  lsm6ds3tr-c_reg.h (lsm6ds3tr-c-pid); application note AN5130 §8 (FIFO pattern, address rollback).
- LSM6DS33 datasheet DocID025541: §8, §9 (FTH and DIFF_FIFO one bit wider, 8 kbyte FIFO).
- Tagged FIFO words and their rollback read: LSM6DSOX application note AN5272 §9.
- The temperature output (OUT_TEMP_L/H, 0x20/0x21, int16, 0 LSB at 25 °C), per each datasheet's
  "Temperature sensor characteristics" table and ST's own drivers: 256 LSB/°C on the LSM6DSOX,
  LSM6DSO32, ISM330DHCX and LSM6DS3TR-C (lsm6dso-pid `lsm6dso_from_lsb_to_celsius`, likewise in
  lsm6dsox-, ism330dhcx- and lsm6ds3tr-c-pid: lsb / 256 + 25); 16 LSB/°C on the LSM6DS33
  (DocID025541), the LSM6DS3's die (lsm6ds3-pid `lsm6ds3_from_lsb_to_celsius`: lsb / 16 + 25).
  adafruit_lsm6ds divides by 256 for every chip, which reads an LSM6DS33 16 times too near 25 °C.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

# --- Register map shared by the whole family (DS12814 §9; DS12124 §9) --------------------------
INT1_CTRL = 0x0D
WHO_AM_I = 0x0F
CTRL1_XL = 0x10  # ODR_XL[7:4], FS_XL[3:2]
CTRL2_G = 0x11  # ODR_G[7:4], FS_G[3:2], FS_125 bit 1, FS_4000 bit 0 (ISM330DHCX only)
CTRL3_C = 0x12  # BOOT 7, BDU 6, IF_INC 2, SW_RESET 0
STATUS_REG = 0x1E  # TDA 2, GDA 1, XLDA 0
OUT_TEMP_L = 0x20  # temperature, little-endian int16 at 0x20/0x21
OUTX_L_G = 0x22  # gyro x, y, z as little-endian int16, then accel at 0x28
OUTX_L_A = 0x28
FIFO_STATUS1 = 0x3A  # DIFF_FIFO[7:0]
FIFO_STATUS2 = 0x3B  # watermark, overrun, full flags and DIFF_FIFO's high bits

CTRL3_BOOT = 0x80
CTRL3_BDU = 0x40
CTRL3_IF_INC = 0x04
CTRL3_SW_RESET = 0x01
CTRL3_DEFAULT = CTRL3_IF_INC  # power-on value of CTRL3_C: address auto-increment on
INT1_FIFO_TH = 0x08  # INT1_CTRL bit 3: INT1_FIFO_TH (DSOX) / INT1_FTH (DS3): watermark on INT1
STATUS_XLDA = 0x01
STATUS_GDA = 0x02
FIFO_MODE_CONTINUOUS = 0b110  # FIFO_MODE[2:0] = 110: continuous, newest data overwrite the oldest

# ODR_XL / ODR_G codes (CTRL1_XL, CTRL2_G bits 7:4) to nominal hertz. DS12814 table 52 and DS12124
# table 52 give the same codes; the DSOX family also uses them for BDR_XL/BDR_GY in FIFO_CTRL3 and
# the DS3 family for ODR_FIFO in FIFO_CTRL5.
ODR_CODES_HZ = {1: 12.5, 2: 26.0, 3: 52.0, 4: 104.0, 5: 208.0, 6: 416.0, 7: 833.0,
                8: 1666.0, 9: 3332.0, 10: 6664.0}
# The LSM6DS33 names its lowest rate 13 Hz (DocID025541 table 47).
ODR_CODES_DS33_HZ = {**ODR_CODES_HZ, 1: 13.0}

GYRO_DPS_PER_LSB_FS = {  # FS_G[1:0] code -> (full scale dps, mdps per LSB); DS12814 table 2
    0: (250, 8.75), 1: (500, 17.50), 2: (1000, 35.0), 3: (2000, 70.0)}
GYRO_FS_125_BIT = 0x02  # CTRL2_G bit 1: ±125 dps, 4.375 mdps/LSB
GYRO_FS_4000_BIT = 0x01  # CTRL2_G bit 0 on the ISM330DHCX: ±4000 dps, 140 mdps/LSB (DS13012 table 2)


@dataclass(frozen=True)
class Scale:
    """One full-scale setting: the register bits that select it and the size of one LSB."""

    full_scale: float
    bits: int  # the value OR-ed into the CTRL register (already shifted into place)
    per_lsb: float  # g per LSB (accel) or dps per LSB (gyro)


def _accel_scales(pairs: dict[int, tuple[float, float]]) -> dict[float, Scale]:
    # FS_XL[1:0] sits at CTRL1_XL bits 3:2; sensitivity is given in mg/LSB.
    return {fs: Scale(fs, code << 2, mg / 1000.0) for code, (fs, mg) in pairs.items()}


def _gyro_scales(extra: dict[float, Scale] | None = None) -> dict[float, Scale]:
    scales = {float(fs): Scale(float(fs), code << 2, mdps / 1000.0)
              for code, (fs, mdps) in GYRO_DPS_PER_LSB_FS.items()}
    scales[125.0] = Scale(125.0, GYRO_FS_125_BIT, 4.375 / 1000.0)
    return scales | (extra or {})


# FS_XL codes and mg/LSB: LSM6DSOX DS12814 table 2 and LSM6DS3TR-C DS12124 table 3 agree.
ACCEL_SCALES_16G = _accel_scales({0: (2.0, 0.061), 1: (16.0, 0.488), 2: (4.0, 0.122), 3: (8.0, 0.244)})
# LSM6DSO32: the same codes select twice the range (DS13141 table 2).
ACCEL_SCALES_32G = _accel_scales({0: (4.0, 0.122), 1: (32.0, 0.976), 2: (8.0, 0.244), 3: (16.0, 0.488)})


def _parity_bit(tag_high7: int) -> int:
    """TAG_PARITY, bit 0 of the tag byte: a parity bit over TAG_SENSOR and TAG_CNT (AN5272 §9)."""
    return 0 if bin(tag_high7).count("1") % 2 else 1


@dataclass(frozen=True)
class FifoFormat:
    """How a FIFO family lays out its control registers, its status and its words.

    `kind` is "tagged" (one 7-byte word per sensor per sample: a tag byte naming the sensor, then
    x, y, z as int16) or "pattern" (one 2-byte word per axis, gyro x,y,z then accel x,y,z, with
    FIFO_STATUS3/4 saying which axis comes next). Both roll the read address back to the start of
    the data-out registers, so one long read drains many words (AN5272 §9; AN5130 §8.4).
    """

    kind: Literal["tagged", "pattern"]
    capacity_words: int
    data_out: int  # first data-out register
    word_bytes: int
    words_per_sample: int
    status_bytes: int  # bytes to read from FIFO_STATUS1 for level, flags and pattern
    diff_high_mask: int  # DIFF_FIFO's high bits in FIFO_STATUS2
    wtm_flag: int
    ovr_flag: int
    wtm_reg: int  # watermark low byte; its high bits sit in the next register
    wtm_high_mask: int
    wtm_unit_words: int  # watermark counts tagged words, or 16-bit pattern words

    def level_words(self, status: bytes) -> int:
        """Unread words from FIFO_STATUS1/2."""
        return status[0] | ((status[1] & self.diff_high_mask) << 8)

    def overrun(self, status: bytes) -> bool:
        return bool(status[1] & self.ovr_flag)

    def watermark_reached(self, status: bytes) -> bool:
        return bool(status[1] & self.wtm_flag)

    def pattern(self, status: bytes) -> int:
        """The pattern index of the next word to be read (pattern FIFO only)."""
        return (status[2] | (status[3] << 8)) if self.kind == "pattern" else 0

    def watermark_value(self, samples: int) -> int:
        """The value for the watermark registers that fires after `samples` complete samples."""
        return min(samples * self.words_per_sample // self.wtm_unit_words,
                   (self.wtm_high_mask << 8) | 0xFF)

    def config_writes(self, odr_code: int, watermark_samples: int) -> list[tuple[int, int]]:
        """Register writes that batch accel and gyro at `odr_code` in continuous mode."""
        wtm = self.watermark_value(watermark_samples)
        if self.kind == "tagged":
            # DS12814 §10: FIFO_CTRL1/2 = WTM[8:0]; FIFO_CTRL3 = BDR_GY[7:4] | BDR_XL[3:0];
            # FIFO_CTRL4 = FIFO_MODE[2:0].
            return [(0x07, wtm & 0xFF), (0x08, (wtm >> 8) & self.wtm_high_mask),
                    (0x09, (odr_code << 4) | odr_code), (0x0A, FIFO_MODE_CONTINUOUS)]
        # DS12124 §10 (lsm6ds3tr_c_fifo_ctrl3_t, _ctrl5_t in ST's lsm6ds3tr-c_reg.h): FIFO_CTRL1/2 =
        # FTH; FIFO_CTRL3 = DEC_FIFO_GYRO[5:3] | DEC_FIFO_XL[2:0] (001 = no decimation);
        # FIFO_CTRL5 = ODR_FIFO[6:3] | FIFO_MODE[2:0].
        return [(0x06, wtm & 0xFF), (0x07, (wtm >> 8) & self.wtm_high_mask),
                (0x08, (0b001 << 3) | 0b001), (0x0A, (odr_code << 3) | FIFO_MODE_CONTINUOUS)]

    # --- used by the emulator: what the control registers ask for -----------------------------
    def batching(self, regs: bytearray) -> tuple[bool, bool, bool]:
        """(continuous mode on, accel batched, gyro batched) from the FIFO control registers."""
        if self.kind == "tagged":
            return (regs[0x0A] & 0x07) == FIFO_MODE_CONTINUOUS, bool(regs[0x09] & 0x0F), bool(regs[0x09] >> 4)
        return ((regs[0x0A] & 0x07) == FIFO_MODE_CONTINUOUS and bool(regs[0x0A] >> 3),
                bool(regs[0x08] & 0x07), bool((regs[0x08] >> 3) & 0x07))

    def watermark_words(self, regs: bytearray) -> int:
        wtm = regs[self.wtm_reg] | ((regs[self.wtm_reg + 1] & self.wtm_high_mask) << 8)
        return wtm * self.wtm_unit_words

    def encode(self, accel_raw: np.ndarray, gyro_raw: np.ndarray, first_slot: int) -> bytes:
        """Serialize n samples (int16 (n,3) each) into FIFO words, in FIFO order."""
        n = len(accel_raw)
        if self.kind == "pattern":
            return np.hstack([gyro_raw, accel_raw]).astype("<i2").tobytes()
        words = np.zeros((n, 2, 7), dtype=np.uint8)
        counts = (np.arange(first_slot, first_slot + n) % 4).astype(np.uint8)
        for i, (sensor, raw) in enumerate(((TAG_GYRO, gyro_raw), (TAG_ACCEL, accel_raw))):
            tag = (sensor << 3) | (counts << 1)  # TAG_SENSOR[7:3] | TAG_CNT[2:1]
            words[:, i, 0] = tag | _PARITY[tag >> 1]
            words[:, i, 1:] = raw.astype("<i2").view(np.uint8).reshape(n, 6)
        return words.tobytes()

    # --- used by the readers: words back into samples ------------------------------------------
    def decode(self, data: bytes, first_pattern: int = 0) -> tuple[np.ndarray, np.ndarray, bytes]:
        """Decode whole samples from FIFO bytes; return (accel_raw, gyro_raw, leftover bytes).

        `first_pattern` is where in the 6-word pattern `data` starts (pattern FIFO); leading words of
        a sample whose start was lost are dropped. The leftover bytes, an incomplete last sample,
        belong in front of the next read.
        """
        if self.kind == "pattern":
            words = np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2")
            skip = (-first_pattern) % self.words_per_sample
            words = words[skip:]
            n = len(words) // 6
            used = skip + n * 6
            s = words[: n * 6].reshape(n, 6).astype(np.int16)
            return s[:, 3:], s[:, :3], data[used * 2:]
        nwords = len(data) // 7
        w = np.frombuffer(data[: nwords * 7], dtype=np.uint8).reshape(nwords, 7)
        sensor = w[:, 0] >> 3
        count = (w[:, 0] >> 1) & 0x03
        values = w[:, 1:].copy().view("<i2").reshape(nwords, 3)
        even = nwords - nwords % 2
        first, second = sensor[0:even:2], sensor[1:even:2]
        if (np.all(count[0:even:2] == count[1:even:2]) and np.all(first != second)
                and np.all((first == TAG_ACCEL) | (first == TAG_GYRO))
                and np.all((second == TAG_ACCEL) | (second == TAG_GYRO))):
            # The usual case, every pair whole: decode without a Python loop.
            pairs = values[:even].reshape(-1, 2, 3)
            accel_first = (first == TAG_ACCEL)[:, None]
            return (np.where(accel_first, pairs[:, 0], pairs[:, 1]).astype(np.int16),
                    np.where(accel_first, pairs[:, 1], pairs[:, 0]).astype(np.int16), data[even * 7:])
        # A sample is one accel word and one gyro word with the same TAG_CNT, in either order.
        accel, gyro, i, last_whole = [], [], 0, 0
        while i + 1 < nwords:
            if count[i] == count[i + 1] and {int(sensor[i]), int(sensor[i + 1])} == {TAG_ACCEL, TAG_GYRO}:
                a, g = (i, i + 1) if sensor[i] == TAG_ACCEL else (i + 1, i)
                accel.append(values[a])
                gyro.append(values[g])
                i += 2
                last_whole = i
            else:
                i += 1  # an unpaired or unknown word (e.g. half a sample lost to overrun)
                last_whole = i
        empty = np.zeros((0, 3), dtype=np.int16)
        return (np.array(accel, dtype=np.int16).reshape(-1, 3) if accel else empty,
                np.array(gyro, dtype=np.int16).reshape(-1, 3) if gyro else empty,
                data[last_whole * 7:])


# TAG_SENSOR codes (AN5272 §9, and lsm6dsox_fifo_tag_t in ST's lsm6dsox_reg.h): 0x01 gyroscope NC,
# 0x02 accelerometer NC.
TAG_GYRO = 0x01
TAG_ACCEL = 0x02
_PARITY = np.array([_parity_bit(v) for v in range(128)], dtype=np.uint8)

# DSOX family (DS12814 §10 FIFO_STATUS2: WTM_IA 7, OVR_IA 6, FULL_IA 5, DIFF_FIFO[9:8] 1:0;
# FIFO_CTRL2 WTM8 bit 0). "Up to 9 kbytes" of FIFO (DS12814 §1) is 1316 7-byte words; the 10-bit
# DIFF_FIFO counts at most 1023 of them, so we model that many.
TAGGED_FIFO = FifoFormat(
    kind="tagged", capacity_words=1023, data_out=0x78, word_bytes=7, words_per_sample=2,
    status_bytes=2, diff_high_mask=0x03, wtm_flag=0x80, ovr_flag=0x40, wtm_reg=0x07,
    wtm_high_mask=0x01, wtm_unit_words=1)
# LSM6DS3TR-C: 4 kbyte FIFO = 2048 words; FTH[10:0] and DIFF_FIFO[10:0]; FIFO_STATUS2 WaterM 7,
# OVER_RUN 6, FIFO_FULL_SMART 5, FIFO_EMPTY 4 (DS12124 §10). We model the 2047 words the 11-bit
# DIFF_FIFO can count, so a full FIFO never reads as empty.
PATTERN_FIFO_4K = FifoFormat(
    kind="pattern", capacity_words=2047, data_out=0x3E, word_bytes=2, words_per_sample=6,
    status_bytes=4, diff_high_mask=0x07, wtm_flag=0x80, ovr_flag=0x40, wtm_reg=0x06,
    wtm_high_mask=0x07, wtm_unit_words=1)
# LSM6DS33: 8 kbyte FIFO = 4096 words, FTH[11:0] and DIFF_FIFO[11:0] (DocID025541 §9); 4095 of them
# modelled, as above.
PATTERN_FIFO_8K = FifoFormat(
    kind="pattern", capacity_words=4095, data_out=0x3E, word_bytes=2, words_per_sample=6,
    status_bytes=4, diff_high_mask=0x0F, wtm_flag=0x80, ovr_flag=0x40, wtm_reg=0x06,
    wtm_high_mask=0x0F, wtm_unit_words=1)


@dataclass(frozen=True)
class ChipVariant:
    """One chip of the family: everything the readers and the emulator need to know about it."""

    name: str
    who_am_i: int
    fifo: FifoFormat
    odr_codes_hz: dict[int, float]
    accel_scales: dict[float, Scale]
    gyro_scales: dict[float, Scale]
    has_freq_fine: bool  # INTERNAL_FREQ_FINE (0x63): the factory-measured ODR error, 0.15 %/LSB
    adafruit_class: str  # module:class in adafruit_lsm6ds, for the polled reader
    defaults: dict[int, int] = field(default_factory=dict)  # power-on register values
    temp_lsb_per_c: float = 256.0  # OUT_TEMP sensitivity; 0 LSB reads TEMP_ZERO_C (module docstring)

    def celsius(self, raw: int) -> float:
        """The temperature in °C that an OUT_TEMP reading `raw` (int16) stands for."""
        return TEMP_ZERO_C + raw / self.temp_lsb_per_c

    def temp_raw(self, celsius: float) -> int:
        """The OUT_TEMP reading (int16, saturated) of `celsius`: what the chip itself would output."""
        return int(np.clip(round((celsius - TEMP_ZERO_C) * self.temp_lsb_per_c), -32768, 32767))

    def odr_code(self, odr_hz: float) -> int:
        """The ODR code for `odr_hz`; ValueError listing the rates this chip has."""
        for code, hz in self.odr_codes_hz.items():
            if abs(hz - odr_hz) < 0.01 * hz:
                return code
        raise ValueError(f"{self.name} has no {odr_hz} Hz rate; choose one of "
                         f"{sorted(self.odr_codes_hz.values())}")

    def accel_scale(self, full_scale_g: float) -> Scale:
        return _pick(self.accel_scales, full_scale_g, f"{self.name} accelerometer", "g")

    def gyro_scale(self, full_scale_dps: float) -> Scale:
        return _pick(self.gyro_scales, full_scale_dps, f"{self.name} gyroscope", "dps")

    def accel_scale_from_reg(self, ctrl1_xl: int) -> Scale:
        bits = ctrl1_xl & 0x0C
        return next(s for s in self.accel_scales.values() if s.bits == bits)

    def gyro_scale_from_reg(self, ctrl2_g: int) -> Scale:
        if ctrl2_g & GYRO_FS_4000_BIT and 4000.0 in self.gyro_scales:
            return self.gyro_scales[4000.0]
        if ctrl2_g & GYRO_FS_125_BIT:
            return self.gyro_scales[125.0]
        bits = ctrl2_g & 0x0C
        return next(s for s in self.gyro_scales.values() if s.bits == bits and s.full_scale != 125.0)


def _pick(scales: dict[float, Scale], wanted: float, what: str, unit: str) -> Scale:
    try:
        return scales[float(wanted)]
    except KeyError:
        raise ValueError(f"{what} has no ±{wanted:g} {unit} scale; choose one of "
                         f"{sorted(scales)}") from None


TEMP_ZERO_C = 25.0  # OUT_TEMP reads 0 at 25 °C on every variant (sources in the module docstring)

# Power-on values that differ from zero (DS12814 §9 / DS12124 §9 "Default" column).
_COMMON_DEFAULTS = {CTRL3_C: CTRL3_DEFAULT}

VARIANTS: dict[str, ChipVariant] = {v.name: v for v in (
    ChipVariant("LSM6DSOX", 0x6C, TAGGED_FIFO, ODR_CODES_HZ, ACCEL_SCALES_16G, _gyro_scales(), True,
                "adafruit_lsm6ds.lsm6dsox:LSM6DSOX", _COMMON_DEFAULTS),
    ChipVariant("LSM6DSO32", 0x6C, TAGGED_FIFO, ODR_CODES_HZ, ACCEL_SCALES_32G, _gyro_scales(), True,
                "adafruit_lsm6ds.lsm6dso32:LSM6DSO32", _COMMON_DEFAULTS),
    ChipVariant("ISM330DHCX", 0x6B, TAGGED_FIFO, ODR_CODES_HZ, ACCEL_SCALES_16G,
                _gyro_scales({4000.0: Scale(4000.0, GYRO_FS_4000_BIT, 0.140)}), True,
                "adafruit_lsm6ds.ism330dhcx:ISM330DHCX", _COMMON_DEFAULTS),
    ChipVariant("LSM6DS3TR-C", 0x6A, PATTERN_FIFO_4K, ODR_CODES_HZ, ACCEL_SCALES_16G, _gyro_scales(),
                False, "adafruit_lsm6ds.lsm6ds3trc:LSM6DS3TRC", _COMMON_DEFAULTS),
    ChipVariant("LSM6DS33", 0x69, PATTERN_FIFO_8K, ODR_CODES_DS33_HZ, ACCEL_SCALES_16G, _gyro_scales(),
                False, "adafruit_lsm6ds.lsm6ds33:LSM6DS33", _COMMON_DEFAULTS, temp_lsb_per_c=16.0),
)}

# INTERNAL_FREQ_FINE (DS12814 §10; lsm6dsox_reg.h): the ODR's deviation from nominal in steps of
# 0.15 %, 8-bit two's complement: ODR_actual = ODR_nominal * (1 + 0.0015 * value).
INTERNAL_FREQ_FINE = 0x63
FREQ_FINE_STEP = 0.0015


def variants_for(who_am_i: int) -> list[ChipVariant]:
    """The variants that answer `who_am_i`, the usual one first (the LSM6DSO32 shares 0x6C)."""
    return [v for v in VARIANTS.values() if v.who_am_i == who_am_i]


def variant(name: str) -> ChipVariant:
    """The variant called `name` (case-insensitive); ValueError listing the known ones."""
    for v in VARIANTS.values():
        if v.name.lower() == name.lower():
            return v
    raise ValueError(f"unknown chip {name!r}; known chips: {', '.join(VARIANTS)}")
