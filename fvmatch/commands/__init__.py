"""The command modules of the CLI; each registers its commands on `fvmatch.commands.common.app`."""
