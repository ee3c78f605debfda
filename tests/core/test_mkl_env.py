"""MKL_DEBUG_CPU_TYPE is set on AMD CPUs only, never over the user's value, and before Paddle runs."""

import os
import subprocess
import sys

from simplecv.util import mkl_env

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_amd_gets_the_avx2_path():
    environ = {}
    assert mkl_env.configure(environ, vendor='AuthenticAMD') == '5'
    assert environ == {'MKL_DEBUG_CPU_TYPE': '5'}


def test_other_vendors_are_left_alone():
    for vendor in ('GenuineIntel', 'CentaurHauls', ''):
        environ = {}
        assert mkl_env.configure(environ, vendor=vendor) is None
        assert environ == {}


def test_user_value_wins_even_when_empty():
    for value in ('', '4', '5'):
        environ = {'MKL_DEBUG_CPU_TYPE': value}
        assert mkl_env.configure(environ, vendor='AuthenticAMD') == value
        assert environ == {'MKL_DEBUG_CPU_TYPE': value}


def _entry_point_environment(extra):
    env = {k: v for k, v in os.environ.items() if k != 'MKL_DEBUG_CPU_TYPE'}
    env.update(extra)
    code = (
        'import runpy, sys, os; sys.argv = ["apex_train.py", "--help"]\n'
        'try:\n    runpy.run_path("apex_train.py", run_name="__main__")\n'
        'except SystemExit:\n    pass\n'
        'sys.stderr.write("MKL=%r" % os.environ.get("MKL_DEBUG_CPU_TYPE"))'
    )
    done = subprocess.run(
        [sys.executable, '-c', code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stderr.rsplit('MKL=', 1)[1]


def test_training_entry_point_sets_it_and_respects_an_opt_out():
    expected = repr('5') if 'AMD' in mkl_env.cpu_vendor().upper() else repr(None)
    assert _entry_point_environment({}) == expected
    assert _entry_point_environment({'MKL_DEBUG_CPU_TYPE': ''}) == repr('')
