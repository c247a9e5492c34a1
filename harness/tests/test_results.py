#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Tests of the result parser (parse-results.py) and the summary
(summary.py), which together decide green or red: recorded run
directories under fixtures/ (kselftest TAP with pass, fail, skip, xfail and
a timeout; nested TAP from the kselftest runner; KTAP from KUnit with a
parameterised case and a truncated suite; a clean run with a splat; a
guest killed mid-suite; a GoogleTest XML report; a plain program that
skipped) go through the real scripts, and their verdicts are checked.
KUnit's own parser (tools/testing/kunit/kunit_parser.py of $GMEM_KTREE)
cross-checks the KTAP verdict when the tree is there. Also check-filter.py,
which decides what check-series.sh counts as a patch's new warning, and
series-text.py, which finds project-internal references in the exported
series (lint.sh series-text), and cover-letter.py, which fills the cover
letter's placeholders.

Prints TAP (one case per test), so the test command's runner judges it
like every other suite.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
HARNESS = HERE.parent
LIB = HARNESS / 'lib'
FIXTURES = HERE / 'fixtures'


def run_parser(fixture, suite='s'):
    """Copy a fixture run directory, run parse-results.py on it; return
    (exit status, counts from result.tsv, {case: (status, detail)})."""
    tmp = Path(tempfile.mkdtemp())
    try:
        run = tmp / fixture
        shutil.copytree(FIXTURES / fixture, run)
        p = subprocess.run([sys.executable, LIB / 'parse-results.py', suite, run],
                           capture_output=True, text=True)
        res = (run / 'result.tsv').read_text().rstrip('\n').split('\t')
        counts = dict(zip(('passed', 'failed', 'skipped', 'splats'), map(int, res[1:5])))
        cases = {}
        for line in (run / 'cases.tsv').read_text().splitlines()[1:]:
            name, status, detail, _secs = line.split('\t')
            cases[name] = (status, detail)
        return p.returncode, counts, cases
    finally:
        shutil.rmtree(tmp)


class ParseResults(unittest.TestCase):
    def test_kselftest_tap(self):
        rc, n, cases = run_parser('ksft_tap')
        self.assertEqual(rc, 1)
        self.assertEqual(n, {'passed': 2, 'failed': 2, 'skipped': 1, 'splats': 0})
        self.assertEqual(cases['iommufd_gmem.mock.map_file'][0], 'passed')
        self.assertEqual(cases['iommufd_gmem.mock.convert'][0], 'failed')
        # A skip is never a pass, a timed-out case is a failure, an
        # expected failure counts as passed.
        self.assertEqual(cases['iommufd_gmem.mock.snp'], ('skipped', 'no SEV-SNP here'))
        self.assertEqual(cases['iommufd_gmem.mock.stall'][0], 'failed')
        self.assertEqual(cases['iommufd_gmem.mock.xfail'][0], 'passed')

    def test_nested_tap_counts_the_top_level(self):
        rc, n, cases = run_parser('nested_tap')
        self.assertEqual(rc, 1)
        self.assertEqual(n['passed'], 1)
        self.assertEqual(n['failed'], 1)
        self.assertEqual(cases['selftests: iommu: iommufd'][0], 'failed')
        self.assertNotIn('inner.a', cases)

    def test_ktap(self):
        rc, n, cases = run_parser('ktap', 'kernel.kunit')
        self.assertEqual(rc, 1)
        self.assertEqual(cases['guest_memfd_notifier.register_unregister'][0], 'passed')
        self.assertEqual(cases['guest_memfd_notifier.order_across_clients'][0], 'failed')
        # A parameterised case counts once, by its own line.
        self.assertEqual(cases['guest_memfd_notifier.prepare_refusal'][0], 'passed')
        self.assertEqual(cases['guest_memfd_notifier.memory_failure'][0], 'skipped')
        # The second suite was cut short: the top-level plan is not met.
        self.assertEqual(cases['kernel.kunit: missing suites'][0], 'failed')
        self.assertEqual(n, {'passed': 3, 'failed': 2, 'skipped': 1, 'splats': 0})

    def test_ktap_agrees_with_kunit_parser(self):
        tree = Path(os.environ.get('GMEM_KTREE', '/var/cache/gmem-series/linux'))
        kunit = tree / 'tools/testing/kunit'
        if not (kunit / 'kunit_parser.py').exists():
            self.skipTest(f'no kunit_parser.py in {tree}')
        sys.path.insert(0, str(kunit))
        try:
            import kunit_parser
            import kunit_printer
        finally:
            sys.path.pop(0)
        lines = (FIXTURES / 'ktap/output.log').read_text().splitlines(keepends=True)
        test = kunit_parser.parse_run_tests(lines, kunit_printer.null_printer)

        def failed(t, path=()):
            out = set()
            for s in t.subtests:
                if s.subtests:
                    out |= failed(s, path + (s.name,))
                elif s.status == kunit_parser.TestStatus.FAILURE:
                    out.add('.'.join(path + (s.name,)))
            return out
        _rc, n, cases = run_parser('ktap', 'kernel.kunit')
        ours = {c for c, (st, _d) in cases.items() if st == 'failed' and ': ' not in c}
        self.assertEqual(failed(test), ours)
        self.assertEqual(test.counts.skipped, n['skipped'])
        # Both call the run red, kunit_parser for the missing suite too.
        self.assertNotEqual(test.status, kunit_parser.TestStatus.SUCCESS)
        self.assertGreater(test.counts.errors + test.counts.crashed, 0)

    def test_splat_fails_a_clean_run(self):
        rc, n, cases = run_parser('splat')
        self.assertEqual(rc, 1)
        self.assertEqual(n, {'passed': 2, 'failed': 1, 'skipped': 0, 'splats': 1})
        self.assertIn('gmem_notify', cases['s: kernel log'][1])

    def test_required_log_line_present(self):
        rc, n, _cases = run_parser('require_log')
        self.assertEqual(rc, 0)
        self.assertEqual(n, {'passed': 2, 'failed': 0, 'skipped': 0, 'splats': 0})

    def test_required_log_line_missing_fails(self):
        rc, n, cases = run_parser('require_log_missing')
        self.assertEqual(rc, 1)
        self.assertEqual(n, {'passed': 2, 'failed': 1, 'skipped': 0, 'splats': 0})
        self.assertEqual(cases['s: required kernel log line'],
                         ('failed', 'not in the kernel log: '
                          'guest_memfd: software ownership model on'))

    def test_truncated_log(self):
        rc, n, cases = run_parser('truncated')
        self.assertEqual(rc, 1)
        self.assertEqual(n['passed'], 2)
        self.assertEqual(cases['s: missing results'], ('failed', 'plan 1..5, 2 reported'))
        self.assertEqual(cases['s: guest'], ('failed', 'timed out'))

    def test_gtest_xml(self):
        rc, n, cases = run_parser('gtest')
        self.assertEqual(rc, 1)
        self.assertEqual(n, {'passed': 1, 'failed': 1, 'skipped': 2, 'splats': 0})
        self.assertEqual(cases['GuestMemfdBasics.ConvertTwice'][0], 'failed')
        self.assertEqual(cases['GuestMemfdBasics.Snp'],
                         ('skipped', 'SEV-SNP not offered by this host'))
        self.assertEqual(cases['GuestMemfdBasics.DISABLED_Slow'], ('skipped', 'disabled'))

    def test_plain_program_skip_is_not_a_pass(self):
        rc, n, _cases = run_parser('plain_skip')
        self.assertEqual(rc, 77)
        self.assertEqual(n, {'passed': 0, 'failed': 0, 'skipped': 1, 'splats': 0})


class Summary(unittest.TestCase):
    def summarize(self, rows, suites=()):
        tmp = Path(tempfile.mkdtemp())
        try:
            for r in rows:
                d = tmp / r[0]
                d.mkdir()
                (d / 'result.tsv').write_text('\t'.join(map(str, r)) + '\n')
            p = subprocess.run([sys.executable, LIB / 'summary.py', tmp, *suites],
                               capture_output=True, text=True)
            return p.returncode, p.stdout.splitlines()[-1]
        finally:
            shutil.rmtree(tmp)

    def test_green(self):
        rc, last = self.summarize([('a', 3, 0, 1, 0), ('b', 2, 0, 0, 0)], ['a', 'b'])
        self.assertEqual((rc, last), (0, '5 passed, 0 failed, 1 skipped'))

    def test_a_failed_case_is_red(self):
        rc, last = self.summarize([('a', 3, 1, 0, 0)], ['a'])
        self.assertEqual((rc, last), (1, '3 passed, 1 failed, 0 skipped'))

    def test_a_splat_is_red(self):
        rc, _last = self.summarize([('a', 3, 0, 0, 1)], ['a'])
        self.assertEqual(rc, 1)

    def test_a_suite_without_result_is_red(self):
        rc, last = self.summarize([('a', 3, 0, 0, 0)], ['a', 'gone'])
        self.assertEqual((rc, last), (1, '3 passed, 1 failed, 0 skipped'))

    def test_nothing_passed_is_red(self):
        rc, _last = self.summarize([('a', 0, 0, 4, 0)], ['a'])
        self.assertEqual(rc, 1)


class CheckFilter(unittest.TestCase):
    """check-series.sh's verdict on a tool's warnings at a patch."""
    def run_filter(self, tool, new, base=None, allow=None, files=None):
        tmp = Path(tempfile.mkdtemp())
        try:
            args = [sys.executable, LIB / 'check-filter.py', '--tool', tool,
                    '--patch', '0002', '--strip', '/t/linux', '--strip', '../../linux']
            (tmp / 'new').write_text(new)
            if base is not None:
                (tmp / 'base').write_text(base)
                args += ['--base', tmp / 'base']
            if allow is not None:
                (tmp / 'allow').write_text(allow)
                args += ['--allow', tmp / 'allow']
            if files is not None:
                args += ['--files', *files]
            out = subprocess.run(args + ['--', tmp / 'new'], capture_output=True,
                                 text=True, check=True).stdout.splitlines()
            return out[:-1], tuple(map(int, out[-1].split()))
        finally:
            shutil.rmtree(tmp)

    def test_only_new_warnings_in_touched_files(self):
        base = '../../linux/arch/x86/kvm/../../../virt/kvm/kvm_main.c:10:5: warning: old one [-Wx]\n'
        new = ('../../linux/virt/kvm/kvm_main.c:12:5: warning: old one [-Wx]\n'
               '../../linux/virt/kvm/kvm_main.c:40:1: warning: new one [-Wy]\n'
               '../../linux/include/linux/mm.h:3:1: warning: not touched [-Wz]\n')
        lines, counts = self.run_filter('build', new, base, files=['virt/kvm/kvm_main.c'])
        self.assertEqual(counts, (1, 0))
        self.assertIn('new one', lines[0])

    def test_a_second_copy_of_a_warning_is_new(self):
        base = 'virt/kvm/x.c:1:1: warning: w\n'
        new = 'virt/kvm/x.c:1:1: warning: w\nvirt/kvm/x.c:9:1: warning: w\n'
        self.assertEqual(self.run_filter('build', new, base)[1], (1, 0))

    def test_allowlist_needs_patch_file_and_message(self):
        allow = ('checkpatch\t0002,0004\tvirt/kvm/*\tWARNING:CONST_STRUCT:\tthe reason\n'
                 'checkpatch\t0009\t*\tCHECK:LINE_SPACING:\tanother patch\n')
        new = ('virt/kvm/guest_memfd/core.c:36: WARNING:CONST_STRUCT: struct x should be const\n'
               'virt/kvm/guest_memfd/core.c:366: CHECK:LINE_SPACING: Please use a blank line\n'
               'mm/x.c:3: WARNING:CONST_STRUCT: struct y should be const\n')
        lines, counts = self.run_filter('checkpatch', new, allow=allow)
        self.assertEqual(counts, (2, 1))
        self.assertTrue(lines[0].startswith('allowed: ') and lines[0].endswith('[the reason]'))

    def test_kernel_doc(self):
        base = 'Warning: virt/kvm/kvm_main.c:2257 No description found for return value\n'
        new = ('Warning: virt/kvm/kvm_main.c:2301 No description found for return value\n'
               "Warning: virt/kvm/kvm_main.c:5000 function parameter 'x' not described\n")
        self.assertEqual(self.run_filter('kernel-doc', new, base)[1], (1, 0))


class SeriesText(unittest.TestCase):
    """lint.sh series-text's verdict on recorded bad and good samples: the
    bad ones are an excerpt of a cover letter that pasted the
    repository's notes, and a patch with every kind of internal
    reference; the good ones hold what a kernel text may say instead."""
    def run_check(self, kind):
        d = FIXTURES / 'series_text' / kind
        p = subprocess.run([sys.executable, LIB / 'series-text.py',
                            *sorted(map(str, d.iterdir()))],
                           capture_output=True, text=True)
        found = set()
        for line in p.stdout.splitlines():
            if line.startswith('# '):
                where, rule = line[2:].split(': ')[:2]
                found.add((where, rule))
        return p.returncode, p.stdout, found

    def test_bad_sample_fails_with_every_finding(self):
        rc, out, found = self.run_check('bad')
        self.assertEqual(rc, 1)
        self.assertIn('not ok 1 0000-cover-letter.patch', out)
        self.assertIn('not ok 2 0001-', out)
        cover = '0000-cover-letter.patch'
        patch = '0001-iommufd-selftest-Test-guest_memfd-mirroring.patch'
        self.assertEqual(found, {
            (f'{cover}:10', 'issue'), (f'{cover}:16', 'issue'),
            (f'{cover}:22', 'commit-hash'), (f'{cover}:28', 'commit-hash'),
            (f'{cover}:32', 'round'), (f'{cover}:38', 'ci'),
            (f'{cover}:43', 'bug-log'),
            # The folded subject, the changelog, the added lines; never
            # the context or removed lines.
            (f'{patch}:5', 'issue'), (f'{patch}:7', 'issue'),
            (f'{patch}:8', 'ci'), (f'{patch}:8', 'stop'),
            (f'{patch}:8', 'first-person'), (f'{patch}:21', 'bug-log'),
            (f'{patch}:21', 'first-person'), (f'{patch}:21', 'round'),
            (f'{patch}:23', 'commit-hash'), (f'{patch}:24', 'round')})

    def test_good_sample_passes(self):
        rc, out, found = self.run_check('good')
        self.assertEqual((rc, found), (0, set()), out)
        self.assertEqual(out.splitlines()[0], '1..2')


class CoverLetter(unittest.TestCase):
    """export-series.sh's cover letter: placeholders filled from runs of
    the same patches only."""
    def make(self, source, digest='d1', res_digest='d1', check_digest='d1'):
        tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, tmp)
        (tmp / 'cover').write_text('Subject: [PATCH 0/2] *** SUBJECT HERE ***\n\n'
                                   '*** BLURB HERE ***\n\nshortlog\n')
        (tmp / 'source').write_text(source)
        res, chk = tmp / 'res', tmp / 'chk'
        res.mkdir()
        chk.mkdir()
        (res / 'series-digest').write_text(res_digest + '\n')
        (res / 'summary.tsv').write_text(
            'suite\tpassed\tfailed\tskipped\tsplats\ttime_s\n'
            'lint.x\t3\t0\t0\t0\t\n'
            'series.kvm.t\t5\t0\t2\t0\t30.0\n')
        (chk / 'series-digest').write_text(check_digest + '\n')
        (chk / 'results.tsv').write_text('0001\tok\tok\t0\t0 (+1 allowed)\t0\t9\tsubj\n')
        (tmp / 'allow').write_text('# comment\n'
                                   "checkpatch\t0001\t*\tCHECK:SPACING: '\\*' \\(x\\)\tbecause\n")
        p = subprocess.run([sys.executable, LIB / 'cover-letter.py', '--cover', tmp / 'cover',
                            '--source', tmp / 'source', '--results', res, '--check', chk,
                            '--allow', tmp / 'allow', '--digest', digest, '--patches', '2',
                            '--base-version', '7.3.4-1', '--base-sha256', 'abc'],
                           capture_output=True, text=True)
        return p.returncode, (tmp / 'cover').read_text(), p.stderr

    def test_filled_from_runs_of_these_patches(self):
        rc, text, _err = self.make('The subject\n\n@@BASE@@\n\n@@TEST_RESULTS@@\n\n'
                                   '@@CHECK_RESULTS@@\n')
        self.assertEqual(rc, 0)
        self.assertIn('Subject: [PATCH 0/2] The subject\n', text)
        self.assertIn('7.3.4-1, tarball sha256\nabc)', text)
        self.assertRegex(text, r'\n    series\.kvm\.t +5 +0 +2 +0\n')
        self.assertRegex(text, r'\n  total +8 +0 +2 +0\n')
        self.assertRegex(text, r'\n  0001 +ok +ok +0 +0 \(\+1 allowed\) +0\n')
        self.assertIn('Only patches 0001-0001 of 2 were checked.', text)
        self.assertIn('Every patch was also checked on its own', text)
        self.assertIn('Skipped cases are VM types', text)
        self.assertIn("CHECK:SPACING: '*' (x)\n  because", text)
        self.assertNotIn('@@', text)
        self.assertTrue(text.endswith('\n\nshortlog\n'))

    def test_runs_of_other_patches_are_not_quoted(self):
        rc, text, err = self.make('S\n\n@@TEST_RESULTS@@\n@@CHECK_RESULTS@@\n',
                                  res_digest='old', check_digest='old')
        self.assertEqual(rc, 0)
        self.assertNotIn('series.kvm.t', text)
        self.assertNotIn('0001   ok', text)
        self.assertIn('[No test results of this version', text)
        self.assertIn('[No per-patch check of this version', text)
        self.assertNotIn('Every patch was also checked', text)
        self.assertIn('no test results of these patches', err)

    def test_unknown_placeholder_fails(self):
        rc, _text, err = self.make('S\n\n@@TEST_RESULT@@\n')
        self.assertEqual(rc, 1)
        self.assertIn('unknown placeholder @@TEST_RESULT@@', err)


class Tap(unittest.TestResult):
    """unittest's results as TAP, one line per test."""
    def __init__(self, total):
        super().__init__()
        self.n = 0
        print(f'1..{total}', flush=True)

    def _line(self, test, ok, extra=''):
        self.n += 1
        print(f"{'ok' if ok else 'not ok'} {self.n} {test.id().split('.', 1)[1]}{extra}", flush=True)

    def addSuccess(self, test):
        super().addSuccess(test)
        self._line(test, True)

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._line(test, True, f' # SKIP {reason}')

    def _fail(self, test, err, kind):
        self._line(test, False)
        for line in self._exc_info_to_string(err, test).splitlines():
            print(f'# {line}')
        getattr(super(), kind)(test, err)

    def addFailure(self, test, err):
        self._fail(test, err, 'addFailure')

    def addError(self, test, err):
        self._fail(test, err, 'addError')


if __name__ == '__main__':
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
    result = Tap(suite.countTestCases())
    suite.run(result)
    sys.exit(0 if result.wasSuccessful() else 1)
