"""What a score means: LR maps fitted per (space, trial type) on labelled trials (fitting), and a score judged under
one (scoring)."""
