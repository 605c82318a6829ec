"""The phone classes of the PPG encoder and the maps from each engine's phone symbols onto them.

40 classes: the 39 ARPAbet phones without stress (CMU dictionary set) plus `sil`. Every engine's
symbols map onto these; an unknown symbol raises `UnknownPhone` (its utterance is skipped and
counted by the data command) rather than being guessed.
"""
from __future__ import annotations

PHONES: tuple[str, ...] = (
    "sil", "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH",
    "IH", "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH", "UW",
    "V", "W", "Y", "Z", "ZH",
)
PHONE_INDEX: dict[str, int] = {p: i for i, p in enumerate(PHONES)}
SIL = PHONE_INDEX["sil"]


class UnknownPhone(ValueError):
    """An engine produced a phone symbol that has no class."""


# espeak-ng IPA phoneme -> (misaki symbols Kokoro reads, ARPAbet class). Multi-letter espeak phonemes
# that are not listed are split greedily into listed pieces (e.g. 'ɑːɹ' -> 'ɑ' + 'ɹ' after ː is dropped).
# Diphthongs and affricates become misaki's single symbols (neural-tts.md); flaps and glottal stops
# become T as in the CMU dictionary that flite uses.
_IPA: dict[str, tuple[str, str]] = {
    "aɪ": ("I", "AY"), "aʊ": ("W", "AW"), "eɪ": ("A", "EY"), "oʊ": ("O", "OW"), "əʊ": ("O", "OW"),
    "ɔɪ": ("Y", "OY"), "dʒ": ("ʤ", "JH"), "tʃ": ("ʧ", "CH"),
    "ɚ": ("əɹ", "ER"), "ɝ": ("ɜɹ", "ER"), "ɜ": ("ɜɹ", "ER"),
    "æ": ("æ", "AE"), "a": ("æ", "AE"), "ɑ": ("ɑ", "AA"), "ɒ": ("ɑ", "AA"), "ɔ": ("ɔ", "AO"),
    "ə": ("ə", "AH"), "ʌ": ("ʌ", "AH"), "ɐ": ("ə", "AH"), "ᵻ": ("ᵻ", "IH"), "ɛ": ("ɛ", "EH"),
    "e": ("ɛ", "EH"), "ɪ": ("ɪ", "IH"), "i": ("i", "IY"), "u": ("u", "UW"), "ʊ": ("ʊ", "UH"),
    "o": ("O", "OW"),
    "b": ("b", "B"), "d": ("d", "D"), "f": ("f", "F"), "h": ("h", "HH"), "j": ("j", "Y"),
    "k": ("k", "K"), "l": ("l", "L"), "m": ("m", "M"), "n": ("n", "N"), "p": ("p", "P"),
    "s": ("s", "S"), "t": ("t", "T"), "v": ("v", "V"), "w": ("w", "W"), "z": ("z", "Z"),
    "ɡ": ("ɡ", "G"), "g": ("ɡ", "G"), "ŋ": ("ŋ", "NG"), "ʃ": ("ʃ", "SH"), "ʒ": ("ʒ", "ZH"),
    "ð": ("ð", "DH"), "θ": ("θ", "TH"), "ɹ": ("ɹ", "R"), "r": ("ɹ", "R"), "ɾ": ("ɾ", "T"),
    "ʔ": ("ʔ", "T"), "x": ("k", "K"), "ç": ("h", "HH"), "ɬ": ("l", "L"),
}
_IPA_DROP = "ːˑ̩̃"  # length marks and the syllabic / nasal diacritics carry no class of their own
IPA_STRESS = "ˈˌ"


def ipa_phone(phoneme: str) -> list[tuple[str, str]]:
    """One espeak-ng IPA phoneme (stress marks removed) -> [(misaki symbol(s), ARPAbet class), ...]."""
    rest = "".join(c for c in phoneme if c not in _IPA_DROP)
    out: list[tuple[str, str]] = []
    while rest:
        for size in (2, 1):
            if rest[:size] in _IPA:
                out.append(_IPA[rest[:size]])
                rest = rest[size:]
                break
        else:
            raise UnknownPhone(f"espeak-ng phoneme {phoneme!r} has no class (at {rest!r})")
    return out


# flite's CMU phones are the ARPAbet set in lower case, plus 'pau' and a few reduced forms.
_FLITE_EXTRA = {"pau": "sil", "ax": "AH", "axr": "ER", "dx": "T", "ix": "IH", "ux": "UW", "el": "L", "en": "N", "em": "M"}


def flite_phone(symbol: str) -> int:
    """A flite `-psdur` phone -> class index."""
    if symbol in _FLITE_EXTRA:
        return PHONE_INDEX[_FLITE_EXTRA[symbol]]
    cls = PHONE_INDEX.get(symbol.upper())
    if cls is None or cls == SIL:
        raise UnknownPhone(f"flite phone {symbol!r} has no class")
    return cls


# MBROLA SAMPA phones as espeak-ng writes them for mb-us1/2/3 (American) and mb-en1 (British).
_SAMPA: dict[str, str] = {
    "_": "sil", "p": "P", "b": "B", "t": "T", "d": "D", "k": "K", "g": "G", "f": "F", "v": "V",
    "T": "TH", "D": "DH", "s": "S", "z": "Z", "S": "SH", "Z": "ZH", "h": "HH", "tS": "CH", "dZ": "JH",
    "m": "M", "n": "N", "N": "NG", "l": "L", "5": "L", "r": "R", "w": "W", "j": "Y", "4": "T", "?": "T",
    "i": "IY", "I": "IH", "E": "EH", "e": "EH", "{": "AE", "a": "AE", "A": "AA", "Q": "AA", "O": "AO",
    "O2": "AO", "V": "AH", "@": "AH", "6": "AH", "U": "UH", "u": "UW", "r=": "ER", "3`": "ER", "@`": "ER", "3": "ER",
    "eI": "EY", "EI": "EY", "aI": "AY", "AI": "AY", "aU": "AW", "OI": "OY", "oI": "OY", "@U": "OW",
    "oU": "OW", "o": "OW", "I@": "IH", "e@": "EH", "E@": "EH", "U@": "UH", "l=": "L", "n=": "N", "m=": "M",
}


def sampa_phone(symbol: str) -> int:
    """An MBROLA phone -> class index (aspiration `_h` and length `:` marks are dropped)."""
    key = symbol.replace("_h", "").replace(":", "") if symbol != "_" else symbol
    name = _SAMPA.get(key)
    if name is None:
        raise UnknownPhone(f"MBROLA phone {symbol!r} has no class")
    return PHONE_INDEX[name]
