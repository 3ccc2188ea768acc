"""Putting items in a gallery: batch enrolment (enroll) and the vectors an upgraded gallery's items lack (reembed)."""
