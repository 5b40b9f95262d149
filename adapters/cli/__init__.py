"""The command line and the process: ``imagine-bot`` commands, ``run``, health and logs."""
