"""`daydream capture`: record the labelled run pairs used to validate what-if predictions."""
from daydream.cli import main
from daydream.profile.capture import capture_command

main.add_command(capture_command, "capture")
