"""Recording run directories: TBD suite models (`profile_model`) and unmodified training scripts
(`profile_script`) under torch.profiler. The run directory format is in docs/suite.md."""
from daydream.profile.model import profile_model, saved_activation_bytes
from daydream.profile.script import profile_script

__all__ = ["profile_model", "profile_script", "saved_activation_bytes"]
