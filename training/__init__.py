"""Training of the joint embedding (installed as `fvmatch.training`)."""
