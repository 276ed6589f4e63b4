"""The PLM scoring rule sets, as a table: one `RuleSet` record per standard.

A new standard is a new entry in `RULE_SETS`; the scoring code reads the figures from the record and
never branches on the name. Every figure cites its source.

Sources:
- WASM 2016: Ferri R, Fulda S, Allen RP, et al. World Association of Sleep Medicine (WASM) 2016
  standards for recording and scoring leg movements in polysomnograms developed by a joint task
  force from the IRLSSG and EURLSSG. Sleep Med 2016;26:86–95.
- AASM 2012: Berry RB, Brooks R, Gamaldo CE, et al. The AASM Manual for the Scoring of Sleep and
  Associated Events, version 2.0, 2012, chapter VII (movement rules), which keeps the PLM rules of
  Zucconi M, Ferri R, Allen R, et al., The official WASM standards for recording and scoring PLMS
  and PLMW, Sleep Med 2006;7:175–183.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal


@dataclass(frozen=True)
class RuleSet:
    """The figures of one scoring standard. Times in seconds; bounds are inclusive unless named `_lt`.

    `bilateral` says how LMs on the two legs become one bilateral LM:
    - `"gap"`: they overlap, or the offset of one is less than `bilateral_within_s` before the onset
      of the other;
    - `"onset"`: their onsets are less than `bilateral_within_s` apart.
    `short_imi` says what a CLM with an IMI below `imi_min_s` does:
    - `"break"`: it ends the running series and is not part of it, but may start the next;
    - `"skip"`: it is not a PLM and is passed over; the series goes on, and the next IMI is measured
      from the CLM before it.
    """

    name: str
    lm_min_s: float
    same_leg_within_s: float
    clm_min_s: float
    clm_max_s: float
    bilateral: Literal["gap", "onset"]
    bilateral_within_s: float
    bilateral_max_s: float | None
    bilateral_max_parts: int | None
    imi_min_s: float
    imi_max_s: float
    short_imi: Literal["break", "skip"]
    min_series_clms: int
    long_lm_breaks_series: bool
    citation: str


WASM2016 = RuleSet(
    name="WASM2016",
    # WASM 2016: an LM lasts at least 0.5 s, and it ends at the start of a period of at least 0.5 s
    # below the offset threshold, so movements on one leg less than 0.5 s apart are one LM. PLMScoRe
    # (Fulda's R code of WASM 2016, R/lm_score.R) joins them first (`lm_unil`), then drops what
    # is still shorter than 0.5 s (`lm_dur1`).
    lm_min_s=0.5,
    same_leg_within_s=0.5,
    # WASM 2016 (Ferri et al., Sleep Med 2016;26:86–95): a candidate LM (CLM) is a monolateral LM
    # of 0.5–10 s, both ends inclusive.
    clm_min_s=0.5,
    clm_max_s=10.0,
    # WASM 2016: monolateral LMs on the two legs are one bilateral LM when they overlap or
    # when less than 0.5 s separates the offset of one from the onset of the next.
    bilateral="gap",
    bilateral_within_s=0.5,
    # WASM 2016: a bilateral CLM lasts at most 15 s and is made of at most 4 monolateral
    # LMs, none of them longer than 10 s (the data behind it: Ferri et al., Sleep Med 2017;32:10–15,
    # where only 0.12–0.27 % of bilateral LMs had > 4 parts and 0.16–1.9 % lasted > 15 s).
    bilateral_max_s=15.0,
    bilateral_max_parts=4,
    # WASM 2016: a PLM series is at least 4 consecutive CLMs with an onset-to-onset
    # intermovement interval (IMI) ≥ 10 s and ≤ 90 s (the abstract: "≥10 and ≤ 90 s").
    imi_min_s=10.0,
    imi_max_s=90.0,
    # WASM 2016: a CLM preceded by an IMI < 10 s ends the series and is not part of it; it may be
    # the first CLM of the next one. An IMI > 90 s, or an LM that is not a CLM (e.g. > 10 s), also
    # ends the series (the "end of PLM sequence" row of the WASM/AASM comparison, Table 3 of
    # PMC9619152, gives "NA" for AASM).
    short_imi="break",
    min_series_clms=4,
    long_lm_breaks_series=True,
    citation="Ferri R et al. WASM 2016 standards for recording and scoring leg movements. Sleep Med 2016;26:86-95",
)

AASM2012 = RuleSet(
    name="AASM2012",
    # AASM Manual v2.0 (2012), LM rules: the minimum duration of an LM is 0.5 s; it ends at the start
    # of a period of at least 0.5 s during which the EMG stays within 2 µV of resting, so movements
    # on one leg less than 0.5 s apart are one LM.
    lm_min_s=0.5,
    same_leg_within_s=0.5,
    # AASM Manual v2.0 (2012), LM rules: an LM lasts 0.5–10 s.
    clm_min_s=0.5,
    clm_max_s=10.0,
    # AASM Manual v2.0, PLM series rules: LMs on two different legs separated by less than 5 s between
    # their onsets count as a single LM. The manual sets no length or part limit for that LM.
    bilateral="onset",
    bilateral_within_s=5.0,
    bilateral_max_s=None,
    bilateral_max_parts=None,
    # AASM Manual v2.0, PLM series rules: at least 4 consecutive LMs, with a period (onset to onset)
    # of 5 to 90 s, both inclusive.
    imi_min_s=5.0,
    imi_max_s=90.0,
    # The manual gives no rule for an LM less than 5 s after the previous one, beyond that it cannot
    # join a series at that period. We read it as the field does: the LM is not a PLM and does not
    # interrupt the series (Ferri et al., Sleep Med 2015;16:1229–35: the standard method runs series
    # past such LMs; only their "Alt2", which became WASM 2016, lets them interrupt), and the next
    # period is measured from the LM before it (the "old way" in the IRLSSG group's MATPLM code,
    # removeShortIMI, which drops the LM and adds its interval to the next one).
    short_imi="skip",
    min_series_clms=4,
    # Under AASM 2012 a movement > 10 s is not an LM at all (its maximum LM duration), so it cannot
    # break a series; breaking on non-CLM LMs is new in WASM 2016. It is still listed, clm false.
    long_lm_breaks_series=False,
    citation="Berry RB et al. The AASM Manual for the Scoring of Sleep and Associated Events v2.0, 2012",
)

# The Suggested Immobilization Test (docs/sit.md): LMs while awake, sitting up in bed with the legs
# outstretched for an hour before bedtime. Montplaisir J, Boucher S, Nicolas A, et al. Immobilization
# tests and periodic leg movements in sleep for the diagnosis of restless leg syndrome. Mov Disord
# 1998;13:324–329: a SIT PLM index > 40/h separated RLS from controls (about 81 % sensitivity and
# specificity). Its scoring is Michaud M, Poirier G, Lavigne G, Montplaisir J. Restless legs
# syndrome: scoring criteria for leg movements recorded during the suggested immobilization test.
# Sleep Med 2001;2:317–321. Which interval bounds, and why: Michaud et al. found the PLMS
# periodicity criteria of the time (IMI 4–90 s, series of at least 4) captured over 90 % of SIT LMs,
# with a modal IMI of 11–12 s, and recommended them for the SIT. WASM 2016 (Ferri et al.) scores
# PLMW by its PLMS rules (IMI 10–90 s, CLM breaks), which lower PLM rates most during wake (Fulda et
# al., the 2006 versus 2016 comparison); the 40/h cut-off was validated with the older criteria and
# has not been re-validated under WASM 2016, so the SIT index keeps the criteria it was derived with.
SIT = replace(
    AASM2012,
    name="SIT",
    # As AASM 2012 above, which kept the rules of the time (ASDA 1993 atlas, WASM 2006): LMs of
    # 0.5-10 s (Michaud et al. 2001: SIT LMs last longer than in sleep, many 5-10 s), two legs' LMs
    # with onsets under 5 s apart are one, an LM less than the minimum period after the previous one
    # neither counts nor interrupts the series (Ferri et al., Sleep Med 2015;16:1229-35, the
    # "standard" method), and an LM over 10 s breaks nothing. Only the period differs: Michaud et al.
    # 2001 score movements 4-90 s apart in series of at least four.
    imi_min_s=4.0,
    citation="Michaud M et al. Scoring criteria for leg movements recorded during the SIT. Sleep Med 2001;2:317-321",
)

RULE_SETS: dict[str, RuleSet] = {r.name: r for r in (WASM2016, AASM2012, SIT)}


def rule_set(name: str) -> RuleSet:
    """The rule set called `name` ("WASM2016", "AASM2012" or "SIT"); ValueError naming the choices otherwise."""
    try:
        return RULE_SETS[name]
    except KeyError:
        raise ValueError(f"unknown rule set {name!r}; choose one of {', '.join(RULE_SETS)}") from None
