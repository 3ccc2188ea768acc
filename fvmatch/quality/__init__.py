"""Quality of the evidence, measured on each item and stored with its embedding.

Faces (`fvmatch.quality.face`): `eye_distance_px`, `face_px`, `sharpness` (higher is sharper),
`detection_probability`, `jpeg_quality` (the IJG quality the file was saved at, where it can be read).
Voices (`fvmatch.quality.voice`): `bandwidth_hz` (highest frequency the speech carries, up to 8 kHz), `snr_db`,
`clipped_fraction`, `speech_seconds`, `sample_rate` and `codec` as read from the file.
A questioned voice's figures pick the references it is compared with (`fvmatch.spaces.conditions`); analysts'
minimums refuse items too poor to compare (`fvmatch.quality.minimums`).
"""
from fvmatch.quality.face import face_quality, jpeg_quality_estimate
from fvmatch.quality.voice import VoiceQualityMeter

__all__ = ["face_quality", "jpeg_quality_estimate", "VoiceQualityMeter"]
