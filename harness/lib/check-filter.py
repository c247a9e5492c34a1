#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Judge one tool's output for one patch of harness/check-series.sh.

Reads the warnings a tool printed at a patch (NEW) and, optionally, at its
parent (--base), keeps those in the files the patch touches (--files),
drops those already present at the parent (same file and message: line
numbers move), and splits what is left into allowed (harness/
check-allow.tsv names it, with a reason) and not allowed. Prints every
remaining warning, "allowed: ..." lines with the reason, and last the
line "NEW ALLOWED". Exit status 0 (the caller decides).

Tools and the lines they print:
  build       gcc and sparse: FILE:LINE[:COL]: warning|error: MESSAGE
  kernel-doc  Warning|Error: FILE:LINE MESSAGE
  checkpatch  --terse --showfile --show-types: FILE:LINE: LEVEL:TYPE: MESSAGE
              (or PATCH:LINE: ... for commit-message findings)

Usage: check-filter.py --tool TOOL --patch NNNN [--allow FILE]
                       [--base LOG] [--strip PREFIX]... [--files F...] LOG
"""
import argparse
import fnmatch
import os
import re
import sys

PATTERNS = {
    'build': re.compile(r'^(?P<file>[^:\s]+):(?P<line>\d+):(?:\d+:)? '
                        r'(?P<msg>(?:warning|error): .*)$'),
    'kernel-doc': re.compile(r'^(?:Warning|Error|warning|error): (?P<file>[^:\s]+):(?P<line>\d+):? '
                             r'(?P<msg>.*)$'),
    'checkpatch': re.compile(r'^(?P<file>[^:]*):(?P<line>\d+): '
                             r'(?P<msg>(?:ERROR|WARNING|CHECK):.*)$'),
}


def norm_path(path, strips):
    """A path as the tree names it: build output says ../linux/x.c,
    /abs/tree/x.c or arch/x86/kvm/../../../virt/kvm/x.c."""
    for s in strips:
        s = s.rstrip('/') + '/'
        if path.startswith(s):
            path = path[len(s):]
            break
    path = os.path.normpath(path)
    while path.startswith('../'):
        path = path[3:]
    return path


def read_warnings(log, tool, strips):
    """(file, message) -> [full lines], in order."""
    out = {}
    if not log or not os.path.exists(log):
        return out
    pat = PATTERNS[tool]
    with open(log, errors='replace') as f:
        for raw in f:
            line = raw.rstrip('\n')
            m = pat.match(line)
            if not m:
                continue
            key = (norm_path(m.group('file'), strips), m.group('msg').strip())
            out.setdefault(key, []).append(line)
    return out


def read_allow(path):
    """tool, patches (NNNN,... or *), file glob, message regex, reason."""
    rules = []
    if not path or not os.path.exists(path):
        return rules
    with open(path) as f:
        for n, raw in enumerate(f, 1):
            if not raw.strip() or raw.startswith('#'):
                continue
            p = raw.rstrip('\n').split('\t')
            if len(p) != 5 or not p[4].strip():
                sys.exit(f'{path}:{n}: want 5 tab-separated fields, the last a reason')
            rules.append((p[0], p[1].split(','), p[2], re.compile(p[3]), p[4]))
    return rules


def allowed(rules, tool, patch, path, msg):
    for r_tool, r_patches, r_glob, r_re, reason in rules:
        if r_tool != tool:
            continue
        if '*' not in r_patches and patch not in r_patches:
            continue
        if not fnmatch.fnmatch(path, r_glob) or not r_re.search(msg):
            continue
        return reason
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--tool', required=True, choices=sorted(PATTERNS))
    ap.add_argument('--patch', required=True)
    ap.add_argument('--allow')
    ap.add_argument('--base')
    ap.add_argument('--strip', action='append', default=[])
    ap.add_argument('--files', nargs='*')
    ap.add_argument('log')
    a = ap.parse_args()

    new = read_warnings(a.log, a.tool, a.strip)
    base = read_warnings(a.base, a.tool, a.strip)
    rules = read_allow(a.allow)
    files = set(a.files) if a.files is not None else None
    n_new = n_allowed = 0
    for key, lines in new.items():
        path, msg = key
        if files is not None and path not in files and a.tool != 'checkpatch':
            continue
        extra = len(lines) - len(base.get(key, []))
        if extra <= 0:
            continue
        reason = allowed(rules, a.tool, a.patch, path, msg)
        for line in lines[-extra:]:
            if reason:
                n_allowed += 1
                print(f'allowed: {line}  [{reason}]')
            else:
                n_new += 1
                print(line)
    print(f'{n_new} {n_allowed}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
