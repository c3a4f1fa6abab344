"""`python -m tbd_suite.capture ...` is `daydream capture ...` (see `--help`)."""
from daydream.cli.capture import capture_command

if __name__ == "__main__":
    capture_command(prog_name="python -m tbd_suite.capture")
