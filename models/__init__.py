"""Network definitions, configs and checkpoint I/O of the joint face-voice embedding.

Installed as `fvmatch.models`; imports nothing of fvmatch's application code.
"""
from .config import CONFIGS, JointModelConfig, get_config

__all__ = ["CONFIGS", "JointModelConfig", "get_config"]
