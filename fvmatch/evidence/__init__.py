"""What an answer rests on: which trial types carry evidence on real people (rules), sex and age read from each side
(attributes, age), a real joint space fused with the sex evidence (sex_fusion) and a fuse-after-align checkpoint's
fused scores (fused_scores)."""
