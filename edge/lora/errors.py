"""What each modem error code means, in the datasheet's words, and what to check in the field.

Sources (stored copies of the vendors' documents, read for this table):
- REYAX "LoRa AT Command Guide" for RYLR998/RYLR498 (document 56312E33, 2023 and 2025 issues),
  section 17 "Error result codes": +ERR=1, 2, 4, 5, 10, 12, 13, 14, 15, 17, 18, 19, 20.
- REYAX "LoRa AT Command Guide" for RYLR896/RYLR406 (document 56322E3x, 2018 and 2022 issues):
  +ERR=1, 2, 3, 4, 10, 11, 12, 13, 15. Codes 3 and 11 exist only there.
- RAKwireless "RUI3 AT Command Manual" (RAK3172, RUI 4.x), section "RUI3 AT Command Format", and
  the RUI3 firmware's own status table (``atcmd_err_tbl`` in RAK-STM32-RUI ``atcmd.c``), which adds
  ``AT_MODE_NO_SUPPORT``, ``AT_COMMAND_NOT_FOUND`` and ``AT_UNSUPPORTED_BAND`` to the manual's list.

The hints are ours (not the vendors'): the most likely cause at a unit, for the technician.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorMeaning:
    """One datasheet error: its words (``meaning``) and what to check (``hint``)."""

    meaning: str
    hint: str

    def describe(self, code: str) -> str:
        return f'{code} "{self.meaning}"'


REYAX_ERRORS: dict[int, ErrorMeaning] = {
    1: ErrorMeaning(
        'There is not "enter" or 0x0D 0x0A in the end of the AT Command',
        "the line ending was lost on the wire: line noise or a loose RX/TX wire?",
    ),
    2: ErrorMeaning(
        'The head of AT command is not "AT" string',
        "wrong baud rate or line noise?",
    ),
    3: ErrorMeaning(
        'There is not "=" symbol in the AT command',
        "command mangled on the wire (RYLR896/RYLR406 only)",
    ),
    4: ErrorMeaning(
        "Unknown command",
        "this firmware does not know the command or refused its value: other model or firmware version?",
    ),
    5: ErrorMeaning(
        "The data to be sent does not match the actual length",
        "payload bytes lost on the UART between host and modem",
    ),
    10: ErrorMeaning(
        "TX is over times",
        "transmission timed out: check the antenna, the supply voltage under load, a busy channel",
    ),
    11: ErrorMeaning("RX is over times", "reception timed out (RYLR896/RYLR406)"),
    12: ErrorMeaning(
        "CRC error",
        "a corrupted packet was heard: interference or two collars transmitting at once",
    ),
    13: ErrorMeaning("TX data exceeds 240bytes", "payload too long for one packet"),
    14: ErrorMeaning("Failed to write flash memory", "the module's flash is failing: replace the module"),
    15: ErrorMeaning("Unknown failure", "power-cycle the modem; replace it if this repeats"),
    17: ErrorMeaning(
        "Last TX was not completed",
        "a packet was sent before the previous one left the antenna",
    ),
    18: ErrorMeaning(
        "Preamble value is not allowed",
        "RYLR998/RYLR498 take preamble 4-24 only with NETWORKID 18, otherwise exactly 12",
    ),
    19: ErrorMeaning("RX failed, Header error", "a corrupted packet header was heard: interference?"),
    20: ErrorMeaning(
        'The time setting value of the "Smart receiving power saving mode" is not allowed',
        "AT+MODE=2 timing out of range (30-60000 ms)",
    ),
}

# Codes a Reyax module may print on its own when the radio hears a broken packet. Seen while a
# command waits, they cannot be told apart from that command's answer; the drivers retry once.
REYAX_RADIO_ERRORS = frozenset({11, 12, 19})

RAK_ERRORS: dict[str, ErrorMeaning] = {
    "AT_ERROR": ErrorMeaning("Generic error or input is not supported", "command refused by the firmware"),
    "AT_PARAM_ERROR": ErrorMeaning(
        "The input parameter of the command is wrong",
        "a value out of range: frequency outside this module's variant (low band 150-600 MHz, high band "
        "600-960 MHz), SF 5-12, preamble 5-65535, TX power 5-22 dBm?",
    ),
    "AT_BUSY_ERROR": ErrorMeaning(
        "The network is busy so the command is not completed",
        "the radio is still in receive mode: AT+PRECV=0 must stop it first",
    ),
    "AT_TEST_PARAM_OVERFLOW": ErrorMeaning("The parameter is too long", "payload or value too long"),
    "AT_NO_CLASSB_ENABLE": ErrorMeaning("End-node has not yet switched in Class B", "LoRaWAN-only command"),
    "AT_NO_NETWORK_JOINED": ErrorMeaning(
        "Module is not yet joined to a network", "the module is in LoRaWAN mode, not P2P (AT+NWM=0)"
    ),
    "AT_RX_ERROR": ErrorMeaning(
        "Error detected during the reception of the command",
        "the command arrived garbled: wrong baud rate or line noise?",
    ),
    "AT_MODE_NO_SUPPORT": ErrorMeaning(
        "The command is not supported in the current work mode",
        "the module is in LoRaWAN mode: P2P commands need AT+NWM=0",
    ),
    "AT_COMMAND_NOT_FOUND": ErrorMeaning("Command not found", "older RUI3 firmware? update the module"),
    "AT_UNSUPPORTED_BAND": ErrorMeaning("Unsupported band", "region not supported by this module variant"),
    "AT_DUTYCYLE_RESTRICTED": ErrorMeaning(  # sic: the firmware's spelling
        "Duty cycle limited and cannot send data", "regional duty-cycle limit reached: wait"
    ),
}


def reyax_meaning(code: int) -> ErrorMeaning:
    """The datasheet meaning of ``+ERR=<code>``; codes missing from both guides say so."""
    return REYAX_ERRORS.get(
        code, ErrorMeaning("not in the REYAX AT command guides", "newer firmware? note the code for support")
    )


def rak_meaning(status: str) -> ErrorMeaning:
    """The meaning of a RUI3 status line such as ``AT_PARAM_ERROR``."""
    return RAK_ERRORS.get(
        status,
        ErrorMeaning("not in the RUI3 AT command manual", "newer firmware? note the status for support"),
    )
