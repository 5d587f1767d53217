"""pyproject.toml's metadata as setuptools reads it: the licence as an SPDX expression with its file
(PEP 639), no deprecation warning (pip used to print one three times per install), and a build
requirement on a setuptools that understands that form."""

from __future__ import annotations

import tomllib
import warnings

from setuptools.config.pyprojecttoml import apply_configuration
from setuptools.dist import Distribution

from tests.support.harness import ROOT


def test_license_is_an_spdx_expression_read_without_warnings(monkeypatch):
    monkeypatch.chdir(ROOT)  # license-files are globbed from the project's root
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # setuptools' deprecation warnings become failures
        dist = apply_configuration(Distribution(), ROOT / "pyproject.toml")
    assert dist.metadata.license_expression == "Apache-2.0"
    assert dist.metadata.license_files == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().lstrip().startswith("Apache License")


def test_the_build_requires_a_setuptools_that_reads_it():
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    assert requires == ["setuptools>=77"]  # 77.0: SPDX `license` and `license-files`
