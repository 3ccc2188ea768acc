"""The gallery's audit trail (trail), scripted batch audits (batch) and a batch audit's query and results files
(files)."""
