"""A study run keeps the imported modules out of the garbage collector's reach while it
trains and reports, and gives everything back to the collector when it ends: a notebook
that runs a study collects its own garbage as before."""

import gc

from conftest import moons_study

from ablab.runner import run_study
from ablab.study import load_study


def test_nothing_stays_frozen_after_a_study(tmp_path):
    frozen = []
    original = gc.freeze

    def counting_freeze():
        original()
        frozen.append(gc.get_freeze_count())

    gc.freeze = counting_freeze
    try:
        outcome = run_study(load_study(moons_study(tmp_path)), tmp_path / "out", workers=2,
                            threads=1, report=False)
    finally:
        gc.freeze = original
    assert outcome.exit_code == 0
    assert frozen and frozen[0] > 0  # the modules loaded were out of reach meanwhile
    assert gc.get_freeze_count() == 0  # and are the collector's again


def test_a_program_that_froze_objects_itself_keeps_them_frozen(tmp_path):
    gc.freeze()
    try:
        before = gc.get_freeze_count()
        run_study(load_study(moons_study(tmp_path)), tmp_path / "out", workers=2, threads=1,
                  report=False)
        # still frozen (a frozen object that dies still leaves the count: not exact)
        assert gc.get_freeze_count() > before // 2
    finally:
        gc.unfreeze()
