"""The CI skip guard of tests/conftest.py: under CI=true an unlisted skip fails the run, with or without xdist."""

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

CONFTEST = (Path(__file__).parent / "conftest.py").read_text()


@pytest.fixture
def project(pytester):
    pytester.makeconftest(CONFTEST)
    tests = pytester.mkpydir("tests")
    (tests / "test_finetune_example.py").write_text(
        "import pytest\n\ndef test_measured_figures():\n    pytest.skip('no flower photos here')\n"
    )
    (tests / "test_other.py").write_text(
        "import pytest\n\ndef test_fine():\n    assert True\n\n"
        "def test_hides():\n    pytest.skip('a dependency is missing')\n\n"
        "@pytest.mark.xfail(reason='known')\ndef test_known():\n    assert False\n"
    )
    (tests / "test_module_skip.py").write_text("import pytest\n\npytest.importorskip('no_such_module_xyz')\n")
    return pytester


@pytest.mark.parametrize("xdist", [False, True])
def test_an_unlisted_skip_fails_under_ci(project, monkeypatch, xdist):
    monkeypatch.setenv("CI", "true")
    args = ["-p", "no:cacheprovider"] + (["-n", "2"] if xdist else ["-p", "no:xdist"])
    result = project.runpytest_subprocess(*args)
    assert result.ret == 1
    out = result.stdout.str()
    assert "tests/test_other.py::test_hides: a dependency is missing" in out
    assert "tests/test_module_skip.py" in out  # a module-level importorskip counts too
    assert "test_measured_figures" not in out.split("CI=true:")[1]  # allow-listed
    assert "test_known" not in out.split("CI=true:")[1]  # an xfail is no skip
    result.assert_outcomes(passed=1, skipped=3, xfailed=1)


def test_listed_skips_pass_and_without_ci_nothing_changes(project, monkeypatch):
    monkeypatch.setenv("CI", "true")
    assert project.runpytest_subprocess("-p", "no:xdist", "tests/test_finetune_example.py").ret == 0
    monkeypatch.delenv("CI")
    assert project.runpytest_subprocess("-p", "no:xdist").ret == 0
