#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Boot the test kernel and drop into a busybox shell in the guest, on this
# terminal. Files given with --file (and a PROGRAM, if any) are in the
# shell's working directory /run/gmem, shared with the host. Leave with
# "poweroff -f" (or Ctrl-A X).
#
# Usage: guest-shell.sh [--config NAME] [--file PATH]... [PROGRAM]
exec "$(dirname "$0")/guest-run.sh" --shell "$@"
