"""The lines an item's quality figures call for on screen: what fvmatch did to read an odd input (turned a face
upright, read one channel or one audio track of several) or found wrong with it (a damaged file). The figures
themselves are in `--json` and in the gallery's stored quality; these say them where an analyst reads the answer."""
from __future__ import annotations


def input_notes(quality: dict) -> list[str]:
    """One line per odd-input figure of an item's quality (none for an ordinary file)."""
    notes = []
    if quality.get("turned"):
        notes.append(f"the face stood {quality['turned']} degrees off upright: it was turned upright before it was "
                     "read (quality figure 'turned')")
    if quality.get("channels_read"):
        notes.append(f"read {quality['channels_read']}")
    tracks = quality.get("audio_tracks") or []
    if len(tracks) > 1 and quality.get("audio_track"):
        notes.append(f"audio track {quality['audio_track']} of {len(tracks)} read (--audio-track chooses another)")
    if quality.get("damage"):
        notes.append(str(quality["damage"]))
    return notes
