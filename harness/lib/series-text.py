#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Find project-internal references in the series as it would be posted.

The cover letter and the patches go to the kernel's mailing lists; their
readers know nothing of this repository's issue tracker, its CI, its bug
log or its working notes. This reads the files export-series.sh writes
and reports, per file, every line that refers to them:

  issue        an issue number ("issue 12", "Issue #3"; not the verb, as
               in "may issue 16 reads")
  bug-log      the repository's KERNEL-BUGS.md
  ci           the project's CI ("CI run", "in CI", "CI on <commit>")
  commit-hash  an abbreviated commit id that is not an upstream citation
               (kernel style cites 'commit <12+ hex> ("subject")' and
               "Fixes: <12+ hex> (...)", checkpatch "commit id '<hex>'";
               any other hex word of 7-40 digits with both digits and
               letters is taken for a local commit)
  round        "this round" and the like: a working session's narrative
  stop         "stop N": a working session's step
  first-person "I", "I'm", "my", "me": a lab note, not a changelog

Where it looks: in a patch, the changelog (after the mail headers, up to
the "---" line) and the lines the diff adds; context and removed lines
are upstream's text. In the cover letter, everything after the mail
headers except the base-commit and prerequisite trailers.

Usage: series-text.py FILE...
Prints TAP, one case per file, each finding as a diagnostic
("# FILE:LINE: RULE: text"). Exits 1 if any file has a finding.
"""
import re
import sys

HEX = r'(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}'
RULES = [
    ('issue', re.compile(r'\bissues?\s*#?\s*\d+\b', re.I)),
    ('bug-log', re.compile(r'KERNEL-BUGS', re.I)),
    ('ci', re.compile(r'\bCI\b')),
    ('commit-hash', re.compile(r'(?<![\w./-])' + HEX + r'(?![\w/-])')),
    ('round', re.compile(r'\b(this|last|previous|earlier) round\b|\bper-round\b', re.I)),
    ('stop', re.compile(r'\bstop\s+\d+\b', re.I)),
    ('first-person', re.compile(r"(?<![\w/])I(?:'m|'ve|'d|'ll)?(?![\w/])"
                               r"|\b(?:[Mm]y|[Mm]e)\b")),
]
# An upstream citation: 'commit 0123456789ab ("subject")', a Fixes: tag,
# checkpatch's "Unknown commit id '0123456789ab'".
CITATION = re.compile(r'[0-9a-f]{12,40}\s+\("')
CITED_AFTER = re.compile(r"(?:\bcommit(?: id)? '?|\bFixes: )$", re.I)
# "issue" the verb: "the device may issue 16 reads".
VERB_OBJECT = re.compile(r' [a-z]+s\b')


def findings(line):
    """(rule, match, start, end) for one line of text."""
    out = []
    for rule, rx in RULES:
        for m in rx.finditer(line):
            if rule == 'commit-hash' and (CITATION.match(line, m.start()) or
                                          CITED_AFTER.search(line[:m.start()])):
                continue
            if rule == 'issue' and VERB_OBJECT.match(line, m.end()):
                continue
            out.append((rule, m.group(0), m.start(), m.end()))
    return out


def text_lines(path):
    """(line number, text) of the lines a reader of FILE reads as this
    series' own words."""
    with open(path, errors='replace') as f:
        lines = f.read().split('\n')
    cover = path.rsplit('/', 1)[-1].startswith('0000-')
    i = 0
    # The mail headers end at the first blank line; of them, the subject
    # (folded or not) is the series' text.
    subject = False
    while i < len(lines) and lines[i] != '':
        s = lines[i]
        subject = s.startswith('Subject:') or (subject and s[:1] in (' ', '\t'))
        if subject:
            yield i + 1, s
        i += 1
    in_log = True
    for n in range(i, len(lines)):
        s = lines[n]
        if cover:
            if s.startswith(('base-commit:', 'prerequisite-patch-id:')):
                continue
            yield n + 1, s
            continue
        if in_log:
            if s == '---':
                in_log = False
                continue
            yield n + 1, s
        elif s.startswith('+') and not s.startswith('+++ '):
            yield n + 1, s[1:]


def check(path):
    found = []
    name = path.rsplit('/', 1)[-1]
    lines = list(text_lines(path))
    for k, (n, s) in enumerate(lines):
        for rule, what, _start, _end in findings(s):
            found.append(f'{name}:{n}: {rule}: "{what}" in: {s.strip()[:120]}')
        # A phrase broken across two lines ("this\nround").
        if k + 1 < len(lines) and lines[k + 1][0] == n + 1:
            joined = s.rstrip() + ' '
            cut = len(joined)
            joined += lines[k + 1][1].lstrip(' \t*/#')
            for rule, what, start, end in findings(joined):
                if start < cut < end:
                    found.append(f'{name}:{n}: {rule}: "{what}" across lines: {joined.strip()[:120]}')
    return found


def main(argv):
    if not argv:
        print('usage: series-text.py FILE...', file=sys.stderr)
        return 2
    print(f'1..{len(argv)}')
    bad = 0
    for k, path in enumerate(argv, 1):
        found = check(path)
        name = path.rsplit('/', 1)[-1]
        if found:
            bad += 1
            print(f'not ok {k} {name}')
            for f in found:
                print(f'# {f}')
        else:
            print(f'ok {k} {name}')
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
